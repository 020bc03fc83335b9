//! `pulse`: every role of the Pulse pipeline as a subcommand of one binary, so a laptop runs
//! `pulse up` and a cluster runs each role as its own deployment.

mod commands;
mod console;
mod root;
mod shutdown;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pulse_core::config::LogFormat;
use pulse_core::PulseConfig;

/// Real-time social-media analytics: ingest, enrich, store and serve posts.
#[derive(Debug, Parser)]
#[command(name = "pulse", version, about)]
struct Cli {
    /// Configuration file (TOML); `PULSE_*` environment variables override it.
    #[arg(long, global = true, env = "PULSE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format: `text` (readable) or `json`; overrides `log.format`.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every role in one process (topics ensured first), printing live counts.
    Up,
    /// Consume raw posts, enrich them, produce enriched posts (DLQ for bad input).
    Enrich,
    /// Enrich texts from a file or stdin without Kafka: one JSON enrichment per line.
    Analyze(commands::analyze::AnalyzeArgs),
    /// Serve the query API (live windows, stored posts, analysis) over HTTP.
    Api,
    /// A channel's live window from the speed layer (or the known channels), as JSON.
    Live(commands::live::LiveArgs),
    /// Re-read a topic from an offset or a time into a stage (model upgrade, Redis loss,
    /// backfill).
    Replay(commands::replay::ReplayArgs),
    /// Write enriched posts to a store: `pulse sink speed|batch|archive`.
    Sink(commands::sink::SinkArgs),
    /// The batch layer: recompute rollups, read the history.
    #[command(subcommand)]
    Batch(commands::batch::BatchCommand),
    /// Batch-layer schema (Cassandra/ScyllaDB).
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Produce posts to the raw topic.
    #[command(subcommand)]
    Ingest(commands::ingest::IngestCommand),
    /// Kafka topic administration.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create the raw, enriched and DLQ topics (existing ones are left as they are).
    Create,
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Create the keyspace and the tables of schema.cql (existing ones are kept).
    Apply,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, file, environment) as TOML; API
    /// tokens, the CQL password and the sources' secrets, passwords and tokens are
    /// redacted.
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match PulseConfig::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            console::err(format_args!("error: {error}"));
            return ExitCode::from(2);
        }
    };
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    if let Err(error) = telemetry::init_logs(&config.log) {
        console::err(format_args!("error: {error:#}"));
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            console::err(format_args!(
                "error: cannot start the async runtime: {error}"
            ));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            console::err(format_args!("error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: PulseConfig) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up => commands::up::run(config).await,
        Command::Enrich => commands::enrich::run(config).await,
        Command::Analyze(args) => commands::analyze::run(args, config).await,
        Command::Api => commands::api::run(config).await,
        Command::Live(args) => commands::live::run(args, config).await,
        Command::Replay(args) => commands::replay::run(args, config).await,
        Command::Sink(sink) => commands::sink::run(sink, config).await,
        Command::Batch(batch) => commands::batch::run(batch, config).await,
        Command::Schema(SchemaCommand::Apply) => commands::schema::apply(&config).await,
        Command::Ingest(ingest) => commands::ingest::run(ingest, config).await,
        Command::Topics(TopicsCommand::Create) => commands::topics::create(&config).await,
        Command::Config(ConfigCommand::Show) => {
            // Secrets are not printed: a shown configuration ends up in tickets and logs.
            let mut shown = config;
            for token in &mut shown.api.tokens {
                *token = "<redacted>".into();
            }
            if !shown.batch.password.is_empty() {
                shown.batch.password = "<redacted>".into();
            }
            let sections = shown.sources.reddit.values_mut();
            let sections = sections
                .chain(shown.sources.x.values_mut())
                .chain(shown.sources.bluesky.values_mut());
            for section in sections {
                for (key, value) in section.iter_mut() {
                    let secret = ["secret", "password", "token"]
                        .iter()
                        .any(|word| key.contains(word));
                    if secret {
                        *value = "<redacted>".into();
                    }
                }
            }
            print!("{}", toml::to_string_pretty(&shown)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
