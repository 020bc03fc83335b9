//! `pulse live`: a channel's live window from the speed layer, as JSON, for operators and
//! the demo (the query API serves the same figures).

use std::process::ExitCode;

use chrono::Utc;
use clap::Args;
use pulse_core::{PulseConfig, Window};
use pulse_speed::{minute_of, SpeedLayer};

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Channel to show; without it, the known channels are listed.
    #[arg(long)]
    channel: Option<String>,
    /// Window ending now: 5m, 1h or 24h.
    #[arg(long, default_value = "5m")]
    window: Window,
    /// Top keywords and entities to show.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Include the per-minute series.
    #[arg(long)]
    series: bool,
}

/// Prints the window (or the channel list) as pretty JSON.
pub async fn run(args: LiveArgs, config: PulseConfig) -> anyhow::Result<ExitCode> {
    let layer = SpeedLayer::connect(&config.speed)?;
    let Some(channel) = args.channel else {
        let channels: Vec<serde_json::Value> = layer
            .channels()
            .await?
            .into_iter()
            .map(|(channel, last_seen_ms)| {
                serde_json::json!({
                    "channel": channel,
                    "last_seen": chrono::DateTime::from_timestamp_millis(last_seen_ms).map(|t| t.to_rfc3339()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&channels)?);
        return Ok(ExitCode::SUCCESS);
    };
    let end = minute_of(Utc::now()) + 1;
    let mut window = layer
        .window(&channel, end - args.window.minutes(), end, args.top)
        .await?;
    if !args.series {
        window.series.clear();
    }
    println!("{}", serde_json::to_string_pretty(&window)?);
    Ok(ExitCode::SUCCESS)
}
