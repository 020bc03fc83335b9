//! `pulse`: every role of the Pulse pipeline as a subcommand of one binary, so a laptop runs
//! `pulse up` and a cluster runs each role as its own deployment.

mod commands;
mod console;
mod root;
mod shutdown;
mod telemetry;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use console::Output;
use pulse_core::config::LogFormat;
use pulse_core::PulseConfig;

/// Real-time social-media analytics: ingest, enrich, store and serve posts.
#[derive(Debug, Parser)]
#[command(name = "pulse", version, about)]
struct Cli {
    /// Configuration file (TOML); `PULSE_*` environment variables override it.
    #[arg(long, global = true, env = "PULSE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format (on stderr): readable text or JSON lines; overrides `log.format`.
    #[arg(long, global = true, value_name = "FORMAT",
        value_parser = commands::choice::<LogFormat>(["text", "json"]))]
    log_format: Option<LogFormat>,
    /// Print results as JSON lines (one JSON value per line), for scripts; readable text
    /// otherwise. Logs stay on stderr.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every role in one process (topics ensured first), printing live counts.
    Up,
    /// One screen on the deployment: servers, schema, topics, lag, watermark, dead letters
    /// and sources; exits 1 when a server does not answer or the schema is behind.
    Status,
    /// Consume raw posts, enrich them, produce enriched posts (DLQ for bad input).
    Enrich,
    /// Enrich texts from a file or stdin without Kafka: one JSON enrichment per line.
    Analyze(commands::analyze::AnalyzeArgs),
    /// Serve the query API (live windows, stored posts, analysis) over HTTP.
    Api,
    /// A channel's live window from the speed layer (or the known channels).
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
    /// Print a completion script for a shell, e.g. `pulse completions bash >
    /// ~/.local/share/bash-completion/completions/pulse`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `pulse man | man -l -`.
    Man,
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
    /// Print the effective configuration (defaults, file, environment) as TOML (JSON with
    /// `--json`); API tokens, the CQL password and the sources' secrets, passwords and
    /// tokens are redacted.
    Show,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `--help` and `--version` print to stdout, usage errors to stderr.
        Err(error) => {
            let printed = error.print();
            if printed.is_err() && !error.use_stderr() {
                return ExitCode::from(console::CLOSED_STDOUT);
            }
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
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
    let json_logs = config.log.format == LogFormat::Json;
    let output = Output::from_flag(cli.json);
    match runtime.block_on(run(cli.command, config, output)) {
        Ok(code) => code,
        Err(error) if error.is::<console::StdoutClosed>() => ExitCode::from(console::CLOSED_STDOUT),
        // Once, where its reader looks: a JSON log event for a log collector, a line for
        // the person at the terminal.
        Err(error) if json_logs => {
            tracing::error!(error = format!("{error:#}"), "pulse failed");
            ExitCode::FAILURE
        }
        Err(error) => {
            console::err(format_args!("error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: PulseConfig, output: Output) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up => commands::up::run(config).await,
        Command::Status => commands::status::run(config, output).await,
        Command::Enrich => commands::enrich::run(config).await,
        Command::Analyze(args) => commands::analyze::run(args, config).await,
        Command::Api => commands::api::run(config).await,
        Command::Live(args) => commands::live::run(args, config, output).await,
        Command::Replay(args) => commands::replay::run(args, config, output).await,
        Command::Sink(sink) => commands::sink::run(sink, config).await,
        Command::Batch(batch) => commands::batch::run(batch, config, output).await,
        Command::Schema(SchemaCommand::Apply) => commands::schema::apply(&config, output).await,
        Command::Ingest(ingest) => commands::ingest::run(ingest, config, output).await,
        Command::Topics(TopicsCommand::Create) => commands::topics::create(&config, output).await,
        Command::Config(ConfigCommand::Show) => {
            let shown = redacted(config);
            output.result(&shown, || {
                toml::to_string_pretty(&shown).map_or_else(
                    |e| format!("# cannot print as TOML: {e}"),
                    |t| t.trim_end().to_string(),
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "pulse", &mut script);
            write_stdout(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            write_stdout(&page)
        }
    }
}

/// The configuration without its secrets: a shown configuration ends up in tickets and logs.
fn redacted(mut shown: PulseConfig) -> PulseConfig {
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
    shown
}

/// Writes a generated document (completions, man page) to stdout, pipe-safe.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(console::write_error)?;
    Ok(ExitCode::SUCCESS)
}
