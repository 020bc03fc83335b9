//! The `pulse` binary's integration tests, one module per capability, in one test binary
//! (one link, one process that schedules every test) against the real local servers.

mod common;

mod analyze;
mod archive_sink;
mod batch_sink;
mod chaos;
mod closed_output;
mod closed_stdout;
mod dashboard;
mod dead_letters;
mod enrich_delivery;
mod exactly_once;
mod faults;
mod ingest_bluesky;
mod ingest_file;
mod ingest_interrupt;
mod ingest_reddit;
mod ingest_x;
mod metric_contracts;
mod probes;
mod reddit_deletions;
mod replay;
mod replay_reader;
mod soak_bluesky;
mod soak_reddit;
mod soak_x;
mod speed_sink;
mod stack_restart;
mod status;
