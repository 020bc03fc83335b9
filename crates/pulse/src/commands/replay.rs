//! `pulse replay`: re-reads a range of a topic, from an offset or a time up to a time or
//! the topic's current end, into one stage: raw posts into `enrich` after a model upgrade,
//! enriched posts into `sink-speed` after Redis lost its windows, or into `sink-batch` or
//! `sink-archive` for a backfill. Reads outside any consumer group, so the running roles are not disturbed.
//! Shows progress; prints what it did (the report as a JSON line with `--json`).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pulse_core::time::parse_time;
use pulse_core::PulseConfig;
use pulse_kafka::replay::{ReplayRange, ReplayStart};
use pulse_pipeline::replay::ReplayProgress;
use pulse_pipeline::StageKind;

use crate::console::{self, Output};
use crate::root::Root;
use crate::shutdown;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Topic to read (default: the stage's input: the raw topic for enrich, the enriched
    /// topic for the sinks).
    #[arg(long)]
    topic: Option<String>,
    /// Start at this offset of every partition (negative: that many records before each
    /// partition's end), or per partition as `P:O,P:O` (an interrupted replay prints it;
    /// partitions not named are skipped).
    #[arg(
        long,
        allow_negative_numbers = true,
        required_unless_present = "from_time",
        conflicts_with = "from_time",
        value_parser = parse_offsets
    )]
    from_offset: Option<ReplayStart>,
    /// Start at the first record stamped at or after this time (`now-2h`, RFC 3339,
    /// YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    from_time: Option<DateTime<Utc>>,
    /// Stop before the first record stamped at or after this time (default: the end the
    /// topic has when the replay begins).
    #[arg(long, value_parser = parse_time)]
    to_time: Option<DateTime<Utc>>,
    /// The stage to replay into (the sinks also by their short names: speed, batch,
    /// archive).
    #[arg(long, value_parser = super::choice::<StageKind>(super::stage_names(StageKind::ALL)))]
    into: StageKind,
}

/// Runs the replay; exit 130 when interrupted (the report says where to resume).
pub async fn run(
    args: ReplayArgs,
    config: PulseConfig,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_signal()?;
    let mut root = Root::new(config, shutdown.clone());
    // Only what the chosen stage writes with is loaded or connected.
    let Some(replayer) = root.replayer(&[args.into]).await? else {
        return Ok(ExitCode::from(130));
    };
    let start = match (args.from_offset, args.from_time) {
        (Some(start), _) => start,
        (None, Some(time)) => ReplayStart::Time(time),
        (None, None) => anyhow::bail!("give --from-offset or --from-time"),
    };
    let topic = args
        .topic
        .unwrap_or_else(|| args.into.input_topic(replayer.topics()).to_string());
    let range = ReplayRange {
        topic: topic.clone(),
        start,
        end: args.to_time,
    };
    let mut reader = replayer.open(args.into, range).await?;
    console::err(format_args!(
        "replaying {} records of {topic} into {} ({})",
        reader.total(),
        args.into.name(),
        reader
            .spans()
            .iter()
            .map(|s| format!("partition {}: {}..{}", s.partition, s.from, s.to))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(reader.total()).with_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} records ({per_sec}) {msg} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    // Without a terminal, a line every tenth of the range.
    let logged = Mutex::new(0u64);
    let progress = |done: ReplayProgress| {
        bar.set_position(done.replayed);
        bar.set_message(format!(
            "{} emitted, {} dead-lettered",
            done.emitted, done.dead_lettered
        ));
        if bar.is_hidden() {
            if let Ok(mut last) = logged.lock() {
                if done.replayed >= *last + (done.total / 10).max(1) || done.replayed == done.total
                {
                    *last = done.replayed;
                    console::err(format_args!(
                        "replayed {}/{} records",
                        done.replayed, done.total
                    ));
                }
            }
        }
    };
    let report = replayer
        .run(args.into, &mut reader, &progress, &shutdown)
        .await?;
    bar.finish_and_clear();
    let done = report.progress;
    output.result(&report, || {
        format!(
            "replayed {} records of {topic} into {}: {} emitted, {} dead-lettered{}",
            done.replayed,
            args.into.name(),
            done.emitted,
            done.dead_lettered,
            if report.complete {
                String::new()
            } else {
                format!(
                    "; interrupted, resume with --from-offset {}",
                    report
                        .resume_at
                        .iter()
                        .map(|(p, o)| format!("{p}:{o}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        )
    })?;
    Ok(if report.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(130)
    })
}

/// `--from-offset`: `N` for every partition, or `P:O,P:O` per partition.
fn parse_offsets(text: &str) -> Result<ReplayStart, String> {
    if !text.contains(':') {
        return text
            .parse()
            .map(ReplayStart::Offset)
            .map_err(|_| format!("{text:?} is not an offset (N, or P:O,P:O per partition)"));
    }
    let mut offsets = BTreeMap::new();
    for pair in text.split(',') {
        let parsed = pair
            .split_once(':')
            .and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)));
        let Some((partition, offset)) = parsed else {
            return Err(format!("{pair:?} is not partition:offset"));
        };
        if offsets.insert(partition, offset).is_some() {
            return Err(format!("partition {partition} is named twice"));
        }
    }
    Ok(ReplayStart::Offsets(offsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_for_every_partition_or_each() {
        assert_eq!(parse_offsets("-5"), Ok(ReplayStart::Offset(-5)));
        assert_eq!(
            parse_offsets("0:12, 3:40"),
            Ok(ReplayStart::Offsets(BTreeMap::from([(0, 12), (3, 40)])))
        );
        for bad in ["x", "0:", "0:1,0:2", "a:1", ""] {
            assert!(parse_offsets(bad).is_err(), "{bad}");
        }
    }
}
