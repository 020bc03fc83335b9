//! `pulse ingest ...`: producers that publish posts to the raw topic.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use prometheus_client::registry::Registry;
use pulse_core::config::SourceSection;
use pulse_core::PulseConfig;
use pulse_ingest::file::lines::DEFAULT_MAX_LINE_BYTES;
use pulse_ingest::file::{FileOptions, FileSource};
use pulse_ingest::live::LiveSource;
use pulse_ingest::{FileFormat, SourceItem, SyntheticSource};
use pulse_kafka::create_producer;
use pulse_pipeline::live::LiveRun;
use pulse_pipeline::metrics::StageMetrics;
use pulse_pipeline::publish::{PublishTally, Publisher};
use pulse_pipeline::PipelineMetrics;
use rdkafka::producer::FutureProducer;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sources;
use crate::console::{self, Output};
use crate::shutdown;
use crate::telemetry;

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Posts from files: JSONL posts, CSV with a header, plain text (a post per line),
    /// Reddit/Pushshift NDJSON dumps; `.gz` and `.zst` are decompressed.
    File {
        /// Files to ingest, in order.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Channel of records that name none (default: `file/<file name>`).
        #[arg(long)]
        channel: Option<String>,
        /// Format, when the file name does not tell.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Longest accepted line in bytes; longer lines go to the DLQ.
        #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES)]
        max_line_bytes: usize,
    },
    /// Generated posts (source `synthetic`) for demos and load tests.
    Synthetic {
        /// Posts per second; 0 for as fast as the broker takes them.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Stop after this many posts (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
        /// Seed of the generator: the same seed gives the same posts.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Date the posts evenly from this time (`now-6h`, RFC 3339, ...) to now instead
        /// of when each is generated: a backfilled history.
        #[arg(long, requires = "count", value_parser = pulse_core::time::parse_time)]
        since: Option<DateTime<Utc>>,
        /// Channels to spread posts over.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "synthetic/tech,synthetic/sports,synthetic/culture"
        )]
        channels: Vec<String>,
    },
    /// Live posts and comments from Reddit, with edits and deletions, as configured under
    /// `[sources.reddit.<instance>]` (credentials there or in `PULSE_SOURCES__REDDIT__...`
    /// variables). Runs until interrupted; a restart resumes from the checkpoint in Kafka.
    Reddit {
        /// The instance: its configuration section and its checkpoint's name.
        #[arg(long, default_value = "default")]
        instance: String,
        /// Subreddits to follow instead of the configured ones (names without `r/`).
        #[arg(long, value_delimiter = ',')]
        subreddits: Vec<String>,
        /// Listings to follow instead of the configured ones.
        #[arg(long, value_delimiter = ',', value_enum)]
        listings: Vec<ListingArg>,
    },
    /// Live posts from X (API v2): the filtered stream with the configured rules, or with
    /// `--query` recent search polled with since_id; as configured under
    /// `[sources.x.<instance>]` (the bearer token there or in
    /// `PULSE_SOURCES__X__<INSTANCE>__BEARER_TOKEN`). Runs until interrupted; a restart
    /// resumes from the checkpoint in Kafka.
    X {
        /// The instance: its configuration section and its checkpoint's name.
        #[arg(long, default_value = "default")]
        instance: String,
        /// Poll recent search for this query instead of following the stream.
        #[arg(long)]
        query: Option<String>,
        /// The tag of `--query`'s posts: their channel is `x/<tag>`.
        #[arg(long, default_value = "search", requires = "query")]
        tag: String,
    },
    /// Live posts from Bluesky's public Jetstream (no credentials), as configured under
    /// `[sources.bluesky.<instance>]`; deletions become tombstones. Runs until interrupted;
    /// a restart resumes from the cursor in Kafka.
    Bluesky {
        /// The instance: its configuration section and its checkpoint's name.
        #[arg(long, default_value = "default")]
        instance: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListingArg {
    /// New submissions.
    Submissions,
    /// New comments.
    Comments,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
    Text,
}

impl From<FormatArg> for FileFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Jsonl => FileFormat::JsonLines,
            FormatArg::Csv => FileFormat::Csv,
            FormatArg::Text => FileFormat::Text,
        }
    }
}

/// The producers' publisher into the raw topic (and the DLQ), as configured.
pub fn publisher(config: &PulseConfig, metrics: StageMetrics) -> anyhow::Result<Publisher> {
    Ok(publisher_with(
        config,
        create_producer(&config.kafka)?,
        metrics,
    ))
}

/// A publisher into the raw topic (and the DLQ) through `producer`.
pub fn publisher_with(
    config: &PulseConfig,
    producer: FutureProducer,
    metrics: StageMetrics,
) -> Publisher {
    Publisher {
        producer,
        raw_topic: config.kafka.topics.raw.clone(),
        dlq_topic: config.kafka.topics.dlq.clone(),
        limits: config.enrich.post_limits(),
        max_in_flight: config.ingest.max_in_flight,
        max_record_bytes: config.kafka.max_record_bytes,
        metrics,
    }
}

/// Runs an ingest command to completion (or Ctrl-C).
pub async fn run(
    command: IngestCommand,
    config: PulseConfig,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let abort = shutdown::on_signal()?;
    // As `pulse up` does: on a fresh stack producing to a missing topic only retries
    // ("unknown topic") until someone creates it.
    match super::topics::ensure(&config).await {
        Ok(statuses) => tracing::debug!(topics = statuses.len(), "topics ready"),
        Err(error) => tracing::warn!(%error, "cannot ensure topics; producing anyway"),
    }
    let mut registry = Registry::default();
    let metrics = PipelineMetrics::register(&mut registry);
    if let IngestCommand::Bluesky { instance } = &command {
        let overrides = SourceSection::new();
        let source = sources::build(&config, "bluesky", instance, overrides, &mut registry)?;
        let run = sources::live_run(&config, "bluesky", instance, metrics.for_stage("ingest"))?;
        return run_live(run, source, registry, &config, abort, output).await;
    }
    if let IngestCommand::X {
        instance,
        query,
        tag,
    } = &command
    {
        let mut overrides = SourceSection::new();
        if let Some(query) = query {
            overrides.insert("mode".into(), serde_json::json!("search"));
            overrides.insert(
                "rules".into(),
                serde_json::json!([{ "tag": tag, "value": query }]),
            );
        }
        let source = sources::build(&config, "x", instance, overrides, &mut registry)?;
        let run = sources::live_run(&config, "x", instance, metrics.for_stage("ingest"))?;
        return run_live(run, source, registry, &config, abort, output).await;
    }
    if let IngestCommand::Reddit {
        instance,
        subreddits,
        listings,
    } = command
    {
        let mut overrides = SourceSection::new();
        if !subreddits.is_empty() {
            overrides.insert("subreddits".into(), serde_json::json!(subreddits));
        }
        if !listings.is_empty() {
            let names: Vec<&str> = listings
                .iter()
                .map(|l| match l {
                    ListingArg::Submissions => "submissions",
                    ListingArg::Comments => "comments",
                })
                .collect();
            overrides.insert("listings".into(), serde_json::json!(names));
        }
        let source = sources::build(&config, "reddit", &instance, overrides, &mut registry)?;
        let run = sources::live_run(&config, "reddit", &instance, metrics.for_stage("ingest"))?;
        return run_live(run, source, registry, &config, abort, output).await;
    }
    read_items(command, config, registry, metrics, abort, output).await
}

/// Runs a file or synthetic ingest: a blocking reader feeding the publisher.
async fn read_items(
    command: IngestCommand,
    config: PulseConfig,
    registry: Registry,
    metrics: PipelineMetrics,
    abort: CancellationToken,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let publisher = publisher(&config, metrics.for_stage("ingest"))?;
    // `/metrics` lets an alert see a long-running source stop producing. A producer started
    // next to `pulse up` on one machine serves it on a free port; an address that cannot be
    // used at all (a bad host) still leaves the ingest running, without `/metrics`.
    match telemetry::serve_metrics(&config.metrics, Arc::new(registry), abort.clone()).await {
        Ok(endpoint) => endpoint.ready(),
        Err(error) => tracing::warn!(error = format!("{error:#}"), "ingesting without /metrics"),
    }
    let (items_tx, items_rx) = mpsc::channel::<SourceItem>(4_096);
    let bytes_read = Arc::new(AtomicU64::new(0));
    let (reader, total_bytes, what) = match command {
        IngestCommand::File {
            paths,
            channel,
            format,
            max_line_bytes,
        } => {
            let total: u64 = paths
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            let options = FileOptions {
                channel,
                format: format.map(Into::into),
                limits: config.enrich.post_limits(),
                max_line_bytes,
                bytes_read: Some(bytes_read.clone()),
            };
            let what = format!("{} file(s)", paths.len());
            let reader =
                tokio::task::spawn_blocking(move || read_files(&paths, &options, &items_tx));
            (reader, Some(total), what)
        }
        IngestCommand::Synthetic {
            rate,
            count,
            seed,
            since,
            channels,
        } => {
            let mut source = SyntheticSource::new(seed, channels, count);
            if let Some(since) = since {
                source = source.backfill_since(since);
            }
            let reader = tokio::task::spawn_blocking(move || generate(source, rate, &items_tx));
            (reader, None, "synthetic generator".to_string())
        }
        IngestCommand::Reddit { .. } | IngestCommand::X { .. } | IngestCommand::Bluesky { .. } => {
            anyhow::bail!("a live source is not read as items")
        }
    };

    let tally = Arc::new(PublishTally::default());
    let published_all = CancellationToken::new();
    let progress = tokio::spawn(report_progress(
        tally.clone(),
        bytes_read,
        total_bytes,
        published_all.clone(),
    ));
    let started = Instant::now();
    let published = publisher.publish(items_rx, &tally, &abort).await;
    // Let the progress task clear its bar before the summary is printed.
    published_all.cancel();
    let _ = progress.await;
    let file_errors = reader.await?;
    let posts = tally.posts.load(Ordering::Relaxed);
    let dead = tally.dead_letters.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let summary = format!(
        "ingested {posts} posts from {what} in {seconds:.1} s ({:.0} posts/s); {dead} malformed \
         records sent to {}",
        posts as f64 / seconds.max(0.001),
        config.kafka.topics.dlq,
    );
    summarize(
        output,
        &json!({
            "posts": posts,
            "dead_letters": dead,
            "unreadable_files": file_errors,
            "seconds": seconds,
            "interrupted": published.is_err(),
        }),
        &summary,
    )?;
    if let Err(interrupted) = published {
        console::err(format_args!("error: {interrupted}"));
        return Ok(ExitCode::from(130));
    }
    if file_errors > 0 {
        console::err(format_args!(
            "error: {file_errors} file(s) could not be read whole (named above); the \
             records read before each error were ingested"
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What an ingest did: a line on stderr beside the progress for a person, or a JSON line
/// on stdout with `--json`.
fn summarize(output: Output, value: &serde_json::Value, text: &str) -> anyhow::Result<()> {
    match output {
        Output::Json => output.result(value, String::new),
        Output::Text => {
            console::err(text);
            Ok(())
        }
    }
}

/// Runs a live source until interrupted; prints what it published.
async fn run_live<S: LiveSource>(
    run: LiveRun,
    mut source: S,
    registry: Registry,
    config: &PulseConfig,
    stop: CancellationToken,
    output: Output,
) -> anyhow::Result<ExitCode> {
    match telemetry::serve_metrics(&config.metrics, Arc::new(registry), stop.clone()).await {
        Ok(endpoint) => endpoint.ready(),
        Err(error) => tracing::warn!(error = format!("{error:#}"), "ingesting without /metrics"),
    }
    let tally = PublishTally::default();
    let started = Instant::now();
    let ran = run.run(&mut source, &tally, &stop).await;
    let (posts, dead) = (
        tally.posts.load(Ordering::Relaxed),
        tally.dead_letters.load(Ordering::Relaxed),
    );
    let seconds = started.elapsed().as_secs_f64();
    let summary = format!(
        "published {posts} posts and tombstones and {dead} dead letters in {seconds:.1} s; {}",
        source.status()
    );
    summarize(
        output,
        &json!({ "posts": posts, "dead_letters": dead, "seconds": seconds }),
        &summary,
    )?;
    ran?;
    Ok(ExitCode::SUCCESS)
}

/// Reads every file in order into `items`; returns how many files could not be read whole.
fn read_files(paths: &[PathBuf], options: &FileOptions, items: &mpsc::Sender<SourceItem>) -> usize {
    let mut failed = 0;
    for path in paths {
        let source = match FileSource::open(path, options) {
            Ok(source) => source,
            Err(error) => {
                console::err(format_args!("error: {error}"));
                failed += 1;
                continue;
            }
        };
        for item in source {
            match item {
                Ok(item) => {
                    if items.blocking_send(item).is_err() {
                        return failed;
                    }
                }
                Err(error) => {
                    console::err(format_args!("error: {error}"));
                    failed += 1;
                    break;
                }
            }
        }
    }
    failed
}

/// Paces the generator at `rate` posts per second (unpaced when 0).
fn generate(source: SyntheticSource, rate: f64, items: &mpsc::Sender<SourceItem>) -> usize {
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let started = Instant::now();
    for (sent, item) in source.enumerate() {
        if let Some(interval) = interval {
            let due = started + interval.mul_f64(sent as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        if items.blocking_send(item).is_err() {
            break;
        }
    }
    0
}

async fn report_progress(
    tally: Arc<PublishTally>,
    bytes_read: Arc<AtomicU64>,
    total_bytes: Option<u64>,
    stop: CancellationToken,
) {
    let terminal = std::io::stderr().is_terminal();
    let bar = match total_bytes {
        Some(total) if terminal => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        _ if terminal => ProgressBar::new_spinner(),
        _ => ProgressBar::hidden(),
    };
    let started = Instant::now();
    let mut ticker =
        tokio::time::interval(Duration::from_millis(if terminal { 200 } else { 5_000 }));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let posts = tally.posts.load(Ordering::Relaxed);
        let message = format!(
            "{posts} posts ({:.0}/s), {} malformed",
            posts as f64 / started.elapsed().as_secs_f64().max(0.001),
            tally.dead_letters.load(Ordering::Relaxed)
        );
        bar.set_position(bytes_read.load(Ordering::Relaxed));
        bar.set_message(message.clone());
        if !terminal && posts > 0 {
            console::err(format_args!("progress: {message}"));
        }
    }
    bar.finish_and_clear();
}
