//! What every live source (Reddit, X, Bluesky) shares: the [`LiveSource`] trait the source
//! runner drives, the schedules it waits by, its request budget and its metrics.
//!
//! A live source polls or streams an API and hands out events: posts, edits (a post again,
//! same id, new text), tombstones and records that are not posts. After every call it can
//! say where it stands as a checkpoint: opaque bytes that the runner commits to Kafka in the
//! same transaction as the events, and hands back to [`LiveSource::restore`] after a restart
//! or an aborted transaction, so the source resumes exactly where the log says.

pub mod backoff;
pub mod budget;
pub mod catalogue;
#[cfg(any(test, feature = "fakes"))]
pub(crate) mod fake_server;
pub mod metrics;
pub mod seen;
#[cfg(test)]
pub(crate) mod testing;

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use backoff::{Backoff, Schedule};
pub use budget::{BudgetState, Priority, RateHeaders, RequestBudget, MIN_RATE_LIMITED_WAIT};
pub use catalogue::AnySource;
pub use metrics::SourceMetrics;
pub use seen::SeenWindow;

use crate::SourceItem;

/// A source of posts from a live API.
pub trait LiveSource: Send {
    /// The kind of source (`reddit`), part of the checkpoint key and metric labels.
    fn kind(&self) -> &'static str;

    /// The configured instance name; with the kind, it keys the checkpoint.
    fn instance(&self) -> &str;

    /// Sets the position from the last committed checkpoint; `None` starts afresh.
    /// Events handed out since that checkpoint are forgotten: they will be served again.
    fn restore(&mut self, checkpoint: Option<&[u8]>) -> Result<(), SourceError>;

    /// Where the source stands after the events handed out so far.
    fn checkpoint(&self) -> Result<Vec<u8>, SourceError>;

    /// Waits for the next events; an empty list means nothing new for now (the runner may
    /// commit the checkpoint and calls again). Transient failures (5xx, 429, cut streams)
    /// are retried inside with the source's backoff; an error is for good (a credential
    /// rejected, a configuration the API refuses). Returns promptly once `stop` fires.
    fn next_events(
        &mut self,
        stop: &CancellationToken,
    ) -> impl Future<Output = Result<Vec<SourceItem>, SourceError>> + Send;

    /// One line for the operator: position, pace, budget.
    fn status(&self) -> String;
}

/// A source failure that retrying will not mend.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid configuration of {key}: {reason}")]
    Config { key: String, reason: String },
    #[error("credentials rejected by {service}: {detail}")]
    Credentials { service: String, detail: String },
    #[error("the checkpoint cannot be read: {0}")]
    Checkpoint(String),
    #[error("{0}")]
    Refused(String),
}

/// The configuration of instance `name` of `kind` from its section; unknown keys and
/// wrong types are errors naming `sources.<kind>.<name>`.
pub fn read_section<C: DeserializeOwned>(
    kind: &str,
    name: &str,
    section: &pulse_core::config::SourceSection,
) -> Result<C, SourceError> {
    serde_json::from_value(section.clone().into()).map_err(|e| SourceError::Config {
        key: format!("sources.{kind}.{name}"),
        reason: e.to_string(),
    })
}

/// The position a checkpoint holds (`None`: a fresh one), for [`LiveSource::restore`];
/// `source` (`x/main`) names it in errors.
pub fn decode_position<P: DeserializeOwned + Default>(
    source: &str,
    checkpoint: Option<&[u8]>,
) -> Result<P, SourceError> {
    match checkpoint {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| SourceError::Checkpoint(format!("{source}: {e}"))),
        None => Ok(P::default()),
    }
}

/// A position as checkpoint bytes, for [`LiveSource::checkpoint`].
pub fn encode_position<P: Serialize>(source: &str, position: &P) -> Result<Vec<u8>, SourceError> {
    serde_json::to_vec(position).map_err(|e| SourceError::Checkpoint(format!("{source}: {e}")))
}

/// The checkpoint key of a source instance in the checkpoints topic.
pub fn checkpoint_key(kind: &str, instance: &str) -> String {
    format!("{kind}/{instance}")
}
