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
    #[arg(value_parser = parse_sink)]
    sink: StageKind,
}

/// A stage of the catalogue other than enrich, which is not a sink.
fn parse_sink(name: &str) -> Result<StageKind, String> {
    match name.parse::<StageKind>()? {
        StageKind::Enrich => Err("enrich is not a sink: run it with `pulse enrich`".into()),
        sink => Ok(sink),
    }
}

/// Runs a sink role until SIGINT/SIGTERM.
pub async fn run(args: SinkArgs, config: PulseConfig) -> anyhow::Result<ExitCode> {
    Root::new(config, shutdown::on_signal()?)
        .serve_role(args.sink)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_but_enrich_is_a_sink_by_either_name() {
        for kind in StageKind::ALL {
            let short = kind.name().strip_prefix("sink-").unwrap_or(kind.name());
            let parsed = (parse_sink(kind.name()), parse_sink(short));
            match kind {
                StageKind::Enrich => assert_eq!(
                    parsed,
                    (
                        Err("enrich is not a sink: run it with `pulse enrich`".into()),
                        Err("enrich is not a sink: run it with `pulse enrich`".into())
                    )
                ),
                sink => assert_eq!(parsed, (Ok(sink), Ok(sink))),
            }
        }
        assert!(parse_sink("redis")
            .is_err_and(|e| e.starts_with("no stage \"redis\": the stages are enrich, ")));
    }
}
