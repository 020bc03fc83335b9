//! One module per subcommand.

pub mod enrich;
pub mod ingest;
pub mod topics;
pub mod up;
