//! The catalogue of Pulse's stages: the one list of their names, with what each consumes, in
//! which consumer group, how its outputs are delivered, how it batches, what it needs to
//! run and how it is built from that ([`StageKind::build`]). Stages, the role builders,
//! `pulse up`, replay and the admin API all read it, so a stage is listed once, here.

use std::sync::Arc;

use pulse_batch::BatchStore;
use pulse_core::config::{Delivery, PipelineConfig, TopicsConfig};
use pulse_core::PulseConfig;
use pulse_nlp::Enricher;
use pulse_speed::SpeedLayer;
use serde::Serialize;

use crate::stage::Stage;
use crate::{ArchiveSinkStage, BatchSinkStage, EnrichStage, SpeedRecovery, SpeedSinkStage};

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

/// What stages are built from: each takes the resource its [`StageKind::needs`] names (the
/// archive's folder is its configuration). A process fills in those of the stages it runs.
#[derive(Clone, Default)]
pub struct StageResources {
    pub enricher: Option<Arc<Enricher>>,
    pub speed: Option<SpeedLayer>,
    pub batch: Option<BatchStore>,
    /// The check, before each batch of the speed sink's role, that Redis still holds what
    /// its group committed (a replay into the speed layer runs without it).
    pub speed_recovery: Option<Arc<SpeedRecovery>>,
}

/// What is done with a stage once [`StageKind::build`] has built it: wired into a role, or
/// fed a replay. The stages are types of their own, so the catalogue hands each to `with`,
/// and what uses stages names none of them.
pub trait WithStage {
    type Output;

    fn with<S: Stage>(self, stage: S) -> Self::Output;
}

/// A stage this process cannot build: it lacks what the stage writes with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this process cannot run {stage}: it has no {missing}")]
pub struct MissingResource {
    pub stage: &'static str,
    pub missing: &'static str,
}

impl StageKind {
    /// Builds the stage from `resources` and hands it to `with`.
    pub fn build<W: WithStage>(
        self,
        config: &PulseConfig,
        resources: &StageResources,
        with: W,
    ) -> Result<W::Output, MissingResource> {
        let missing = |missing| MissingResource {
            stage: self.name(),
            missing,
        };
        Ok(match self {
            StageKind::Enrich => with.with(EnrichStage::new(
                resources.enricher.clone().ok_or(missing("enricher"))?,
                config.enrich.post_limits(),
                config.kafka.topics.enriched.clone(),
            )),
            StageKind::SinkSpeed => {
                let stage =
                    SpeedSinkStage::new(resources.speed.clone().ok_or(missing("speed layer"))?);
                match &resources.speed_recovery {
                    Some(recovery) => with.with(stage.with_recovery(recovery.clone())),
                    None => with.with(stage),
                }
            }
            StageKind::SinkBatch => with.with(BatchSinkStage::new(
                resources.batch.clone().ok_or(missing("batch layer"))?,
            )),
            StageKind::SinkArchive => with.with(ArchiveSinkStage::new(&config.archive)),
        })
    }

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

    /// Names the kind of the stage it is handed.
    struct KindOf;

    impl WithStage for KindOf {
        type Output = StageKind;

        fn with<S: Stage>(self, stage: S) -> StageKind {
            stage.kind()
        }
    }

    #[tokio::test]
    async fn each_stage_is_built_from_what_it_needs_and_names_what_is_missing() {
        let config = PulseConfig::default();
        let nothing = StageResources::default();
        let built: Vec<Result<StageKind, String>> = StageKind::ALL
            .into_iter()
            .map(|kind| {
                kind.build(&config, &nothing, KindOf)
                    .map_err(|e| e.to_string())
            })
            .collect();
        assert_eq!(
            built,
            [
                Err("this process cannot run enrich: it has no enricher".to_string()),
                Err("this process cannot run sink-speed: it has no speed layer".to_string()),
                Err("this process cannot run sink-batch: it has no batch layer".to_string()),
                Ok(StageKind::SinkArchive),
            ]
        );
        let keywords_only =
            Enricher::with_models(&config.enrich, &[]).expect("a keywords-only enricher");
        let resources = StageResources {
            enricher: Some(Arc::new(keywords_only)),
            // The client connects on first use: no Redis is needed to build the stage.
            speed: Some(SpeedLayer::connect(&config.speed).expect("a Redis client")),
            ..StageResources::default()
        };
        for kind in [
            StageKind::Enrich,
            StageKind::SinkSpeed,
            StageKind::SinkArchive,
        ] {
            assert_eq!(kind.build(&config, &resources, KindOf), Ok(kind));
        }
    }
}
