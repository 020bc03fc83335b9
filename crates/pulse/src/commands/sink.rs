//! `pulse sink SINK`: the role of one sink of the stage catalogue, which writes enriched
//! posts to a store.

use std::process::ExitCode;

use clap::Args;
use pulse_core::PulseConfig;
use pulse_pipeline::StageKind;

use crate::root::Root;
use crate::shutdown;

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// The sink: speed (the Redis speed layer: live windows, top terms, feed), batch (the
    /// Cassandra/ScyllaDB history) or archive (hourly Parquet files under `archive.dir`);
    /// the catalogue's names (sink-speed, ...) work too.
    #[arg(value_parser = super::choice::<StageKind>(super::stage_names(sinks())))]
    sink: StageKind,
}

/// Every stage of the catalogue but enrich, which is not a sink (`pulse enrich` runs it).
fn sinks() -> impl Iterator<Item = StageKind> {
    StageKind::ALL
        .into_iter()
        .filter(|kind| *kind != StageKind::Enrich)
}

/// Runs a sink role until SIGINT/SIGTERM.
pub async fn run(args: SinkArgs, config: PulseConfig) -> anyhow::Result<ExitCode> {
    Root::new(config, shutdown::on_signal()?)
        .serve_role(args.sink)
        .await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        sink: SinkArgs,
    }

    fn parse(name: &str) -> Result<StageKind, String> {
        Cli::try_parse_from(["sink", name])
            .map(|cli| cli.sink.sink)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_stage_but_enrich_is_a_sink_by_either_name() {
        for kind in StageKind::ALL {
            let short = kind.name().strip_prefix("sink-").unwrap_or(kind.name());
            match kind {
                StageKind::Enrich => {
                    let refused = parse("enrich").expect_err("enrich is no sink");
                    assert!(
                        refused.starts_with("error: invalid value 'enrich' for '<SINK>'")
                            && refused.contains("[possible values: sink-speed, speed, "),
                        "{refused}"
                    );
                }
                sink => assert_eq!((parse(kind.name()), parse(short)), (Ok(sink), Ok(sink))),
            }
        }
        assert!(parse("redis").is_err());
    }
}
