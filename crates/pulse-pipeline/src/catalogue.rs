//! The catalogue of Pulse's stages: the one list of their names, with what each consumes, in
//! which consumer group, how its outputs are delivered, how it batches and what it needs to
//! run. Stages, the role builders, `pulse up`, replay and the admin API all read it, so a
//! stage name is written once, here.

use pulse_core::config::{Delivery, PipelineConfig, TopicsConfig};
use pulse_core::PulseConfig;
use serde::Serialize;

/// One stage of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// Raw posts enriched and produced to the enriched topic.
    Enrich,
    /// Enriched posts into the Redis speed layer.
    SinkSpeed,
    /// Enriched posts into the Cassandra/ScyllaDB batch layer.
    SinkBatch,
    /// Enriched posts into the Parquet archive.
    SinkArchive,
}

/// What a stage writes with, besides Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The models (`enrich.models`).
    Enricher,
    /// A Redis connection (`speed.*`).
    SpeedLayer,
    /// A Cassandra/ScyllaDB session (`batch.*`).
    BatchStore,
    /// A folder (`archive.dir`).
    ArchiveFolder,
}

impl StageKind {
    /// Every stage, in the order data flows.
    pub const ALL: [StageKind; 4] = [
        StageKind::Enrich,
        StageKind::SinkSpeed,
        StageKind::SinkBatch,
        StageKind::SinkArchive,
    ];

    /// The stage's name in logs, metrics (`stage` label) and DLQ headers (`pulse.stage`).
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Enrich => "enrich",
            StageKind::SinkSpeed => "sink-speed",
            StageKind::SinkBatch => "sink-batch",
            StageKind::SinkArchive => "sink-archive",
        }
    }

    /// The topic the stage consumes (and what a replay into it reads by default).
    pub fn input_topic(self, topics: &TopicsConfig) -> &str {
        match self {
            StageKind::Enrich => &topics.raw,
            StageKind::SinkSpeed | StageKind::SinkBatch | StageKind::SinkArchive => {
                &topics.enriched
            }
        }
    }

    /// The consumer group the stage's role consumes in.
    pub fn group(self, config: &PulseConfig) -> &str {
        match self {
            StageKind::Enrich => &config.enrich.group,
            StageKind::SinkSpeed => &config.speed.group,
            StageKind::SinkBatch => &config.batch.group,
            StageKind::SinkArchive => &config.archive.group,
        }
    }

    /// How the stage's outputs are delivered: the sinks' writes are idempotent, so they
    /// need no transaction.
    pub fn delivery(self, config: &PulseConfig) -> Delivery {
        match self {
            StageKind::Enrich => config.enrich.delivery,
            StageKind::SinkSpeed | StageKind::SinkBatch | StageKind::SinkArchive => {
                Delivery::AtLeastOnce
            }
        }
    }

    /// How the stage batches (the archive rewrites files per batch, so it batches larger).
    pub fn pipeline(self, config: &PulseConfig) -> PipelineConfig {
        match self {
            StageKind::SinkArchive => config.archive.pipeline(&config.pipeline),
            StageKind::Enrich | StageKind::SinkSpeed | StageKind::SinkBatch => {
                config.pipeline.clone()
            }
        }
    }

    /// Whether `pulse up` runs the stage: the archive writes files into the working folder,
    /// so it waits to be asked (`archive.enabled`).
    pub fn in_up(self, config: &PulseConfig) -> bool {
        match self {
            StageKind::SinkArchive => config.archive.enabled,
            StageKind::Enrich | StageKind::SinkSpeed | StageKind::SinkBatch => true,
        }
    }

    /// What the stage writes with.
    pub fn needs(self) -> Resource {
        match self {
            StageKind::Enrich => Resource::Enricher,
            StageKind::SinkSpeed => Resource::SpeedLayer,
            StageKind::SinkBatch => Resource::BatchStore,
            StageKind::SinkArchive => Resource::ArchiveFolder,
        }
    }

    /// Every stage's name, for messages.
    pub fn names() -> String {
        StageKind::ALL.map(StageKind::name).join(", ")
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for StageKind {
    type Err = String;

    /// A stage's name; `speed`, `batch` and `archive` are accepted for the sinks.
    fn from_str(name: &str) -> Result<Self, String> {
        StageKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name || kind.name().strip_prefix("sink-") == Some(name))
            .ok_or_else(|| format!("no stage {name:?}: the stages are {}", StageKind::names()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_sinks_have_short_names() {
        for kind in StageKind::ALL {
            assert_eq!(kind.name().parse::<StageKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).ok(), Some(kind.name().into()));
        }
        assert_eq!("archive".parse::<StageKind>(), Ok(StageKind::SinkArchive));
        assert_eq!("speed".parse::<StageKind>(), Ok(StageKind::SinkSpeed));
        let err = "sink-redis".parse::<StageKind>().unwrap_err();
        assert_eq!(
            err,
            "no stage \"sink-redis\": the stages are enrich, sink-speed, sink-batch, sink-archive"
        );
    }

    #[test]
    fn each_stage_reads_its_topic_in_its_group() {
        let config = PulseConfig::default();
        let groups: Vec<&str> = StageKind::ALL.iter().map(|k| k.group(&config)).collect();
        assert_eq!(
            groups,
            [
                "pulse-enrich",
                "pulse-speed",
                "pulse-batch",
                "pulse-archive"
            ]
        );
        assert_eq!(
            StageKind::Enrich.input_topic(&config.kafka.topics),
            "pulse.posts.raw"
        );
        assert_eq!(
            StageKind::SinkArchive.input_topic(&config.kafka.topics),
            "pulse.posts.enriched"
        );
        assert_eq!(StageKind::SinkArchive.pipeline(&config).batch_size, 5_000);
        assert_eq!(StageKind::SinkBatch.pipeline(&config).batch_size, 256);
        assert_eq!(
            StageKind::SinkSpeed.delivery(&config),
            Delivery::AtLeastOnce
        );
        assert_eq!(StageKind::Enrich.delivery(&config), Delivery::ExactlyOnce);
        let up: Vec<StageKind> = StageKind::ALL
            .into_iter()
            .filter(|k| k.in_up(&config))
            .collect();
        assert_eq!(
            up,
            [
                StageKind::Enrich,
                StageKind::SinkSpeed,
                StageKind::SinkBatch
            ]
        );
    }
}
