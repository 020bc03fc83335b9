//! The generic stage loop of Pulse and the stages built on it.
//!
//! A [`Stage`] turns a batch of consumed records into one [`Outcome`] per record; the
//! [`runner`] does everything else: consuming with bounded queues (consumption pauses when
//! they are full), batching by count and time, producing outcomes and dead letters, waiting
//! for their delivery, committing only offsets below which every record is handled, and
//! draining on shutdown; or, for exactly-once delivery, each batch's outputs and consumed
//! offsets in one Kafka transaction. The [`catalogue`] lists the stages; [`stages`] holds
//! one file or folder per stage: enrichment, the sinks into the speed and batch layers, and
//! into Parquet files. [`publish`] is the producer side used by every ingest source;
//! [`replay`] hands a bounded range of a topic to a stage the same way.

pub mod catalogue;
mod delivery;
pub mod live;
pub mod metrics;
pub mod publish;
pub mod replay;
pub mod runner;
pub mod speed_recovery;
pub mod stage;
pub mod stages;
mod transactional;

pub use catalogue::StageKind;
pub use metrics::PipelineMetrics;
pub use runner::run_stage;
pub use speed_recovery::SpeedRecovery;
pub use stage::{Outcome, SourceRecord, Stage, StageError};
pub use stages::{ArchiveSinkStage, BatchSinkStage, EnrichStage, SpeedSinkStage};
