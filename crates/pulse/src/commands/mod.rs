//! One module per subcommand.

pub mod analyze;
pub mod api;
pub mod batch;
pub mod enrich;
pub mod ingest;
pub mod live;
pub mod replay;
pub mod role;
pub mod schema;
pub mod sink;
pub mod sources;
pub mod topics;
pub mod up;
