//! Configuration shared by every role: built-in defaults that work against the local stack,
//! overridden by one TOML file, overridden by `PULSE_*` environment variables
//! (`PULSE_KAFKA__BROKERS=host:9092` sets `kafka.brokers`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::validate::PostLimits;

/// The whole effective configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PulseConfig {
    pub kafka: KafkaConfig,
    pub pipeline: PipelineConfig,
    pub enrich: EnrichConfig,
    pub ingest: IngestConfig,
    pub speed: SpeedConfig,
    pub batch: BatchConfig,
    pub archive: ArchiveConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub sources: SourcesConfig,
}

/// The live sources `pulse up` runs, by kind and instance name
/// (`[sources.reddit.rust]`). Each section is read by its source in pulse-ingest, which
/// rejects unknown keys there; credentials may come from `PULSE_SOURCES__...` variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesConfig {
    pub reddit: BTreeMap<String, SourceSection>,
    pub x: BTreeMap<String, SourceSection>,
    pub bluesky: BTreeMap<String, SourceSection>,
}

/// The keys of one source instance's section, as written.
pub type SourceSection = serde_json::Map<String, serde_json::Value>;

/// How to reach Kafka and which topics Pulse uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// The `client.id` of every Kafka client, as the brokers' logs and quotas name it; also
    /// the stem of the live sources' transactional ids.
    pub client_id: String,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Partitions of topics created by `pulse topics create`: the unit of parallelism.
    pub partitions: i32,
    /// Replicas of each topic created by `pulse topics create` (1 on one broker).
    pub replication_factor: i32,
    /// Consumer session timeout; a member silent this long loses its partitions.
    pub session_timeout_ms: u64,
    /// How often consumers commit the offsets below which everything is handled.
    pub commit_interval_ms: u64,
    /// How long the producer retries one record before reporting it failed.
    pub delivery_timeout_ms: u64,
    /// Longest a transaction may stay open (exactly-once enrichment) before the broker
    /// aborts it: what a crashed instance's open transaction can hold up readers, unless a
    /// restart with the same transactional id aborts it first.
    pub transaction_timeout_ms: u64,
    /// Largest record Pulse produces (librdkafka's `message.max.bytes`). A larger post is
    /// dead-lettered where it is made (ingest, the API answers 413), a larger enriched post
    /// at enrich; keep it at or below the topics' `max.message.bytes`.
    pub max_record_bytes: usize,
    /// Producer compression: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: KafkaCompression,
    /// How often librdkafka reports statistics (consumer lag); 0 turns them off.
    pub statistics_interval_ms: u64,
    /// Extra librdkafka properties for every client (e.g. `"security.protocol" = "ssl"`),
    /// applied last so they override Pulse's own settings.
    pub librdkafka: BTreeMap<String, String>,
}

/// Compression of the records Pulse produces (librdkafka's `compression.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl KafkaCompression {
    /// The value librdkafka's `compression.type` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// Topic names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Posts as the sources publish them, keyed by post id (`pulse enrich` reads them).
    pub raw: String,
    /// Enriched posts, keyed by post id (the sinks read them).
    pub enriched: String,
    /// Dead letters of every stage: the original bytes with the reason in headers.
    pub dlq: String,
    /// Where live sources keep their checkpoints: compacted, keyed by source instance.
    pub checkpoints: String,
}

/// The consume -> process -> produce loop shared by every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Largest batch handed to a stage.
    pub batch_size: usize,
    /// Longest a partial batch waits for more records.
    pub batch_wait_ms: u64,
    /// Records buffered between the consumer and the stage; consumption pauses when full.
    pub queue_capacity: usize,
    /// Processed batches whose outputs may await delivery at once.
    pub max_in_flight_batches: usize,
    /// On shutdown, how long to wait for in-flight work before exiting anyway (nothing
    /// unfinished is committed).
    pub drain_timeout_ms: u64,
}

/// How a stage that produces hands its results on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Consumed offsets, produced records and dead letters in one Kafka transaction: every
    /// input record's outputs appear exactly once to readers of committed data. Needs a
    /// broker with transactions (Apache Kafka, Redpanda, ...).
    #[default]
    ExactlyOnce,
    /// Idempotent producer, offsets committed after delivery: a crash can produce a
    /// record's outputs twice (the sinks are idempotent by post id).
    AtLeastOnce,
}

/// The enrich stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichConfig {
    /// Consumer group of `pulse enrich`.
    pub group: String,
    /// `exactly_once` (Kafka transactions, the default) or `at_least_once`.
    pub delivery: Delivery,
    /// Transactional id of this instance under exactly-once delivery. A restarted instance
    /// with the same id aborts what its predecessor left open and fences it, should it still
    /// run. Empty: `<group>-<host name>-<n>`, `n` the lowest number no other instance on this
    /// host holds (a lock file in the temporary directory), so instances on one host differ
    /// and a restart takes the id of the instance it replaces.
    pub transactional_id: String,
    /// Posts whose text is larger than this many bytes go to the DLQ.
    pub max_text_bytes: usize,
    /// Accepted values of a post's `source`.
    pub sources: BTreeSet<String>,
    /// Keywords kept per post.
    pub keywords_per_post: usize,
    /// Longest key phrase, in words.
    pub keyword_ngrams: usize,
    /// Keywords are extracted from at most this many characters of a post.
    pub keyword_text_chars: usize,
    /// Model directories (Pulse manifest or Hugging Face export); each task comes from the
    /// first one that answers it. Empty: keywords only.
    pub models: Vec<String>,
    /// ONNX Runtime shared library; empty: `ORT_LIB`, then where `scripts/setup` puts it.
    pub onnxruntime_library: String,
    /// Intra-op threads of each model session (at least 1).
    pub intra_threads: usize,
    /// Model sessions, each enriching one post at a time on its own thread; 0: one per core
    /// (cgroup CPU quotas included) divided by `intra_threads`.
    pub sessions: usize,
}

/// Producers (`pulse ingest ...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Records awaiting broker acknowledgement at once.
    pub max_in_flight: usize,
}

/// The speed layer (Redis) and `pulse sink speed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeedConfig {
    /// Redis connection URL.
    pub redis_url: String,
    /// Prefix of every key, so several deployments (or tests) share one Redis.
    pub key_prefix: String,
    /// How long minute buckets, term sets and seen-post marks live, in seconds.
    pub retention_secs: u64,
    /// Recent posts kept per channel for the live feed.
    pub feed_length: usize,
    /// Consumer group of `pulse sink speed`.
    pub group: String,
}

impl Default for SpeedConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            key_prefix: "pulse".into(),
            // 25 h: a 24 h window is always complete.
            retention_secs: 25 * 3600,
            feed_length: 1_000,
            group: "pulse-speed".into(),
        }
    }
}

/// `pulse sink archive`: enriched posts as hourly Parquet files, by channel and hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Whether `pulse up` runs the archive sink too (`pulse sink archive` runs it anyway).
    pub enabled: bool,
    /// The archive's root folder.
    pub dir: PathBuf,
    /// Consumer group of `pulse sink archive`.
    pub group: String,
    /// Offsets of one partition that one file covers: a file holds the posts of one
    /// channel and hour whose records lie in `[n * block_offsets, (n + 1) * block_offsets)`.
    pub block_offsets: u64,
    /// Records per batch: each batch rewrites the files it touches, so larger batches mean
    /// fewer rewrites.
    pub batch_size: usize,
    /// Longest a batch waits to fill, in milliseconds.
    pub batch_wait_ms: u64,
    /// Compression of the Parquet pages.
    pub compression: ArchiveCompression,
}

impl ArchiveConfig {
    /// `pipeline` with the archive's batch size and wait: the settings its stage loop and
    /// a replay into it run with.
    pub fn pipeline(&self, pipeline: &PipelineConfig) -> PipelineConfig {
        PipelineConfig {
            batch_size: self.batch_size,
            batch_wait_ms: self.batch_wait_ms,
            // A full batch must fit in the queue, or batches never fill.
            queue_capacity: pipeline.queue_capacity.max(self.batch_size),
            ..pipeline.clone()
        }
    }
}

/// Page compression of the archive's Parquet files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveCompression {
    None,
    Snappy,
    #[default]
    Zstd,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: PathBuf::from("archive"),
            group: "pulse-archive".into(),
            block_offsets: 20_000,
            batch_size: 5_000,
            batch_wait_ms: 2_000,
            compression: ArchiveCompression::default(),
        }
    }
}

/// How the batch keyspace places its replicas (Cassandra's replication class names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationClass {
    /// `replication_factor` replicas, placed without regard to data centres.
    SimpleStrategy,
    /// `datacenters`' replica counts, per data centre.
    NetworkTopologyStrategy,
}

/// Consistency level of the batch layer's reads and writes. Names are read without regard
/// to case, so `LOCAL_QUORUM` as CQL shells write it works too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Consistency {
    Any,
    One,
    Two,
    Three,
    Quorum,
    All,
    LocalQuorum,
    EachQuorum,
    LocalOne,
}

impl Consistency {
    const ALL: [(&'static str, Consistency); 9] = [
        ("any", Consistency::Any),
        ("one", Consistency::One),
        ("two", Consistency::Two),
        ("three", Consistency::Three),
        ("quorum", Consistency::Quorum),
        ("all", Consistency::All),
        ("local_quorum", Consistency::LocalQuorum),
        ("each_quorum", Consistency::EachQuorum),
        ("local_one", Consistency::LocalOne),
    ];
}

impl TryFrom<String> for Consistency {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let lower = name.to_ascii_lowercase();
        Consistency::ALL
            .iter()
            .find(|(known, _)| *known == lower)
            .map(|(_, level)| *level)
            .ok_or_else(|| {
                let known: Vec<&str> = Consistency::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown consistency `{name}`, expected one of {}",
                    known.join(", ")
                )
            })
    }
}

/// The batch layer (ScyllaDB/Cassandra), `pulse sink batch` and `pulse batch recompute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Contact points, comma-separated `host:port`; the driver discovers the other nodes.
    pub nodes: String,
    /// The keyspace of the batch layer's tables (`pulse schema apply` creates it).
    pub keyspace: String,
    /// `SimpleStrategy` (one data centre, local runs) or `NetworkTopologyStrategy`.
    pub replication_class: ReplicationClass,
    /// Replicas per partition under `SimpleStrategy`.
    pub replication_factor: u32,
    /// Replicas per data centre under `NetworkTopologyStrategy`, e.g. `{ dc1 = 3 }`.
    pub datacenters: BTreeMap<String, u32>,
    /// Consistency of reads and writes: `one`, `local_one`, `local_quorum`, `quorum`, `all`
    /// (or `any`, `two`, `three`, `each_quorum`).
    pub consistency: Consistency,
    /// Data centre whose replicas are preferred (token-aware routing stays on); empty for
    /// none.
    pub local_datacenter: String,
    /// Password authentication; empty user for none.
    pub username: String,
    /// The password of `username` (redacted by `pulse config show`).
    pub password: String,
    /// Longest wait for a connection to a node to open.
    pub connect_timeout_ms: u64,
    /// Longest wait for one CQL request's answer before it fails (and is retried).
    pub request_timeout_ms: u64,
    /// Writes in flight at once per sink batch.
    pub max_concurrency: usize,
    /// Partitions read at once by a range query or a recompute.
    pub read_concurrency: usize,
    /// Rows per page of a partition read.
    pub page_size: i32,
    /// Terms kept per bucket and kind (keyword, entity) by `pulse batch recompute`.
    pub top_terms: usize,
    /// Longest range a read of posts or mentions may span, in days: a larger one is
    /// refused before any partition is read (each hour or day is a partition to visit).
    pub max_range_days: u32,
    /// Consumer group of `pulse sink batch`.
    pub group: String,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            nodes: "127.0.0.1:9042".into(),
            keyspace: "pulse".into(),
            replication_class: ReplicationClass::SimpleStrategy,
            replication_factor: 1,
            datacenters: BTreeMap::new(),
            consistency: Consistency::LocalQuorum,
            local_datacenter: String::new(),
            username: String::new(),
            password: String::new(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            max_concurrency: 64,
            read_concurrency: 8,
            page_size: 1_000,
            top_terms: 50,
            max_range_days: 366,
            group: "pulse-batch".into(),
        }
    }
}

/// The query API (`pulse api`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the API listens on; port 0 picks a free port.
    pub listen: String,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most texts in one `POST /api/v1/analyze`.
    pub max_analyze_texts: usize,
    /// Most terms in a live window (`top` parameter).
    pub max_top: usize,
    /// Bearer tokens accepted by `POST /api/v1/posts` and `/api/v1/admin/*`; none: they
    /// refuse every request.
    pub tokens: Vec<String>,
    /// Most posts in one `POST /api/v1/posts`.
    pub max_ingest_posts: usize,
    /// Requests per second allowed to each client address under `/api/v1`; 0: no limit.
    pub rate_limit_per_second: u32,
    /// Requests a client may make at once before the rate applies.
    pub rate_limit_burst: u32,
    /// Origins allowed to call the API from a browser (CORS); `["*"]`: any; none: only the
    /// API's own origin (the dashboard it serves).
    pub cors_origins: Vec<String>,
    /// Directory of the live dashboard served at `/` (its `index.html`, scripts and the
    /// ECharts build `scripts/setup` installs under `node_modules`); relative paths are
    /// taken from the working directory.
    pub dashboard_dir: PathBuf,
    /// A request's headers must arrive within this; a kept-alive connection idle this long
    /// is closed too.
    pub header_timeout_ms: u64,
    /// Connections open at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Event streams (`/api/v1/stream`) open at once; more get 503.
    pub max_streams: usize,
    /// Longest time a request may take until its response starts (an event stream: until
    /// it opens); longer ones are stopped with 503 `timeout`. 0: no limit.
    pub request_timeout_ms: u64,
    /// Longest request target (path and query); longer ones get 414.
    pub max_uri_bytes: usize,
    /// Most bytes of request headers (names and values); more get 431.
    pub max_header_bytes: usize,
    /// Most header lines of a request; more get 431.
    pub max_headers: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1 << 20,
            max_analyze_texts: 256,
            max_top: 100,
            tokens: Vec::new(),
            max_ingest_posts: 1_000,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            cors_origins: Vec::new(),
            dashboard_dir: PathBuf::from("dashboards/live"),
            header_timeout_ms: 10_000,
            max_connections: 1_024,
            max_streams: 256,
            request_timeout_ms: 30_000,
            max_uri_bytes: 8_192,
            max_header_bytes: 32_768,
            max_headers: 100,
        }
    }
}

/// Prometheus exposition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the `/metrics` endpoint of long-running roles; port 0 picks a free port.
    pub listen: String,
    /// Whether long-running roles serve `/metrics`, `/healthz` and `/readyz` at all.
    pub enabled: bool,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human-readable) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `pulse_pipeline=debug,info`.
    pub filter: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}` (expected text or json)"
            )),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: "pulse".into(),
            topics: TopicsConfig::default(),
            partitions: 4,
            replication_factor: 1,
            session_timeout_ms: 10_000,
            commit_interval_ms: 1_000,
            delivery_timeout_ms: 120_000,
            transaction_timeout_ms: 60_000,
            max_record_bytes: 1_000_000,
            compression: KafkaCompression::default(),
            statistics_interval_ms: 5_000,
            librdkafka: BTreeMap::new(),
        }
    }
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            raw: "pulse.posts.raw".into(),
            enriched: "pulse.posts.enriched".into(),
            dlq: "pulse.posts.dlq".into(),
            checkpoints: "pulse.sources.checkpoints".into(),
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            batch_wait_ms: 50,
            queue_capacity: 4_096,
            max_in_flight_batches: 4,
            drain_timeout_ms: 30_000,
        }
    }
}

/// The shipped model, relative to the repository root (where Pulse's scripts run).
pub const DEFAULT_MODEL: &str = "models/pulse-minilm-multitask";

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            group: "pulse-enrich".into(),
            delivery: Delivery::default(),
            transactional_id: String::new(),
            max_text_bytes: 40_000,
            sources: ["reddit", "twitter", "bluesky", "file", "http", "synthetic"]
                .into_iter()
                .map(String::from)
                .collect(),
            keywords_per_post: 8,
            keyword_ngrams: 2,
            keyword_text_chars: 4_000,
            models: vec![DEFAULT_MODEL.to_string()],
            onnxruntime_library: String::new(),
            intra_threads: 1,
            sessions: 0,
        }
    }
}

impl EnrichConfig {
    /// The limits a post must respect to be enriched.
    pub fn post_limits(&self) -> PostLimits {
        PostLimits {
            max_text_bytes: self.max_text_bytes,
            sources: self.sources.clone(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 10_000,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            enabled: true,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            filter: "info".into(),
        }
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl PulseConfig {
    /// Defaults, then `file` (which must exist when given), then `PULSE_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(PulseConfig::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only `PULSE_<SECTION>__<KEY>` variables are configuration; others such as
        // PULSE_CONFIG (the file) or the scripts' PULSE_STACK_DIR are not.
        let environment = Env::prefixed("PULSE_")
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        figment
            .merge(environment)
            .extract()
            .map_err(|e| ConfigError(Box::new(e)))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "pulse.toml",
                "[kafka]\nbrokers = \"kafka:9092\"\npartitions = 12\n[pipeline]\nbatch_size = 64\n",
            )?;
            jail.set_env("PULSE_KAFKA__PARTITIONS", "24");
            jail.set_env("PULSE_KAFKA__TOPICS__RAW", "t.raw");
            let config = PulseConfig::load(Some(Path::new("pulse.toml"))).unwrap();
            assert_eq!(config.kafka.brokers, "kafka:9092");
            assert_eq!(config.kafka.partitions, 24);
            assert_eq!(config.kafka.topics.raw, "t.raw");
            assert_eq!(config.kafka.topics.dlq, "pulse.posts.dlq");
            assert_eq!(config.pipeline.batch_size, 64);
            assert_eq!(config.pipeline.batch_wait_ms, 50);
            Ok(())
        });
    }

    #[test]
    fn only_section_variables_are_configuration() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PULSE_CONFIG", "pulse.toml");
            jail.set_env("PULSE_STACK_DIR", "/tmp/stack");
            jail.set_env("PULSE_SPEED__KEY_PREFIX", "p2");
            let config = PulseConfig::load(None).unwrap();
            assert_eq!(config.speed.key_prefix, "p2");
            jail.set_env("PULSE_SPEED__KEY_PREFIZ", "typo");
            assert!(PulseConfig::load(None).is_err());
            Ok(())
        });
    }

    /// Every enum of the configuration: (section, key, a wrong value, the allowed values).
    const ENUM_KEYS: [(&str, &str, &str, &[&str]); 6] = [
        (
            "kafka",
            "compression",
            "brotli",
            &["none", "gzip", "snappy", "lz4", "zstd"],
        ),
        (
            "enrich",
            "delivery",
            "twice",
            &["exactly_once", "at_least_once"],
        ),
        (
            "archive",
            "compression",
            "brotli",
            &["none", "snappy", "zstd"],
        ),
        (
            "batch",
            "replication_class",
            "LocalStrategy",
            &["SimpleStrategy", "NetworkTopologyStrategy"],
        ),
        (
            "batch",
            "consistency",
            "most",
            &[
                "one",
                "local_one",
                "local_quorum",
                "quorum",
                "all",
                "each_quorum",
            ],
        ),
        ("log", "format", "xml", &["text", "json"]),
    ];

    #[test]
    fn a_wrong_enum_value_names_its_key_and_the_choices_from_file_and_environment() {
        for (section, key, wrong, allowed) in ENUM_KEYS {
            figment::Jail::expect_with(|jail| {
                let name = format!("{section}.{key}");
                jail.create_file("pulse.toml", &format!("[{section}]\n{key} = \"{wrong}\"\n"))?;
                let from_file = PulseConfig::load(Some(Path::new("pulse.toml")))
                    .unwrap_err()
                    .to_string();
                let variable = format!("PULSE_{}__{}", section.to_uppercase(), key.to_uppercase());
                jail.set_env(&variable, wrong);
                let from_environment = PulseConfig::load(None).unwrap_err().to_string();
                for err in [from_file, from_environment] {
                    // Figment names an environment key in its lower-cased form.
                    assert!(err.to_lowercase().contains(&name), "{name}: {err}");
                    assert!(err.contains(wrong), "{name}: {err}");
                    for value in allowed {
                        assert!(err.contains(value), "{name} lacks {value}: {err}");
                    }
                }
                for value in allowed {
                    jail.set_env(&variable, value);
                    let config = PulseConfig::load(None).unwrap();
                    let shown = serde_json::to_value(&config).unwrap();
                    assert_eq!(shown[section][key], *value, "{name}");
                }
                Ok(())
            });
        }
    }

    #[test]
    fn consistency_takes_cql_upper_case_names() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PULSE_BATCH__CONSISTENCY", "LOCAL_QUORUM");
            assert_eq!(
                PulseConfig::load(None).unwrap().batch.consistency,
                Consistency::LocalQuorum
            );
            jail.set_env("PULSE_BATCH__CONSISTENCY", "LOCAL_ONE");
            assert_eq!(
                PulseConfig::load(None).unwrap().batch.consistency,
                Consistency::LocalOne
            );
            Ok(())
        });
    }

    #[test]
    fn log_format_parses_from_the_command_line() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!(
            "xml".parse::<LogFormat>(),
            Err("unknown log format `xml` (expected text or json)".to_string())
        );
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("pulse.toml", "[kafka]\nbrokerz = \"x\"\n")?;
            let err = PulseConfig::load(Some(Path::new("pulse.toml"))).unwrap_err();
            assert!(err.to_string().contains("brokerz"), "{err}");
            assert!(PulseConfig::load(Some(Path::new("absent.toml"))).is_err());
            Ok(())
        });
    }
}
