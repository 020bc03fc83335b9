//! `pulse live`: a channel's live window from the speed layer, for operators and the demo
//! (the query API serves the same figures).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;
use pulse_core::{PulseConfig, TermCount, Window};
use pulse_speed::{minute_of, SpeedLayer, WindowStats};
use serde_json::json;

use crate::console::{self, Output};

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Channel to show; without it, the known channels are listed.
    #[arg(long)]
    channel: Option<String>,
    /// Window ending now.
    #[arg(long, default_value = "5m", value_parser = super::choice::<Window>(Window::ALL.map(Window::as_str)))]
    window: Window,
    /// Top keywords and entities to show.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Include the per-minute series.
    #[arg(long)]
    series: bool,
}

/// Prints the window (or the channel list): readable text, or JSON lines with `--json`.
pub async fn run(args: LiveArgs, config: PulseConfig, output: Output) -> anyhow::Result<ExitCode> {
    let layer = SpeedLayer::connect(&config.speed)?;
    let Some(channel) = args.channel else {
        let channels = layer.channels().await?;
        if output == Output::Text && channels.is_empty() {
            console::err("no channel has posts in the speed layer yet");
        }
        for (channel, last_seen_ms) in channels {
            let last_seen = DateTime::from_timestamp_millis(last_seen_ms);
            output.result(
                &json!({ "channel": channel, "last_seen": last_seen.map(|t| t.to_rfc3339()) }),
                || {
                    let last_seen = last_seen.map_or("-".into(), |t| t.format("%F %T").to_string());
                    format!("{channel:<40} last post {last_seen}")
                },
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let end = minute_of(Utc::now()) + 1;
    let mut window = layer
        .window(&channel, end - args.window.minutes(), end, args.top)
        .await?;
    if !args.series {
        window.series.clear();
    }
    output.result(&window, || describe(&window, args.window))?;
    Ok(ExitCode::SUCCESS)
}

/// The window as a person reads it: counts, mean score, top terms, then the series.
fn describe(window: &WindowStats, span: Window) -> String {
    let totals = window.totals.tally();
    let terms = |terms: &[TermCount]| {
        let listed: Vec<String> = terms
            .iter()
            .map(|t| format!("{} ({})", t.term, t.count))
            .collect();
        if listed.is_empty() {
            "-".to_string()
        } else {
            listed.join(", ")
        }
    };
    let mean = window
        .mean_score
        .map_or("-".to_string(), |m| format!("{m:+.3}"));
    let mut lines = vec![
        format!("{}, last {span}", window.channel),
        format!(
            "posts     {} (negative {}, neutral {}, positive {}), mean score {mean}",
            totals.posts, totals.negative, totals.neutral, totals.positive
        ),
        format!("keywords  {}", terms(&window.keywords)),
        format!("entities  {}", terms(&window.entities)),
    ];
    for minute in &window.series {
        let at = DateTime::from_timestamp(minute.minute * 60, 0)
            .map_or("-".to_string(), |t| t.format("%F %H:%M").to_string());
        lines.push(format!("{at}  {:>6} posts", minute.count));
    }
    lines.join("\n")
}
