//! The stages, one file (or folder) each, named as in the catalogue: each implements
//! [`Stage`](crate::Stage) and says which [`StageKind`](crate::StageKind) it is; the runner,
//! the role builder and replay do the rest.

pub mod enrich;
pub mod sink_archive;
pub mod sink_batch;
pub mod sink_speed;

pub use enrich::EnrichStage;
pub use sink_archive::ArchiveSinkStage;
pub use sink_batch::BatchSinkStage;
pub use sink_speed::SpeedSinkStage;
