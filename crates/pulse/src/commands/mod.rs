//! One module per subcommand, and the argument parsers they share.

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
pub mod status;
pub mod topics;
pub mod up;

use std::str::FromStr;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use pulse_pipeline::StageKind;

/// A closed choice among `names`, parsed into `T`: `--help` lists the names and shell
/// completions offer them (clap's `ValueEnum`, for the domain's own enums).
pub fn choice<T>(names: impl IntoIterator<Item = &'static str>) -> impl TypedValueParser<Value = T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    PossibleValuesParser::new(names).try_map(|name| name.parse::<T>().map_err(|e| e.to_string()))
}

/// The names `stages` answer to on the command line: the catalogue's, and the sinks' short
/// forms (`speed` for `sink-speed`).
pub fn stage_names(stages: impl IntoIterator<Item = StageKind>) -> Vec<&'static str> {
    stages
        .into_iter()
        .flat_map(|kind| std::iter::once(kind.name()).chain(kind.name().strip_prefix("sink-")))
        .collect()
}
