//! Connecting to the cluster and preparing every statement the batch layer runs.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use pulse_core::config::{self, BatchConfig};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use crate::{cql, BatchError};

/// A handle on the batch layer: one driver session (token-aware, pooled) and the prepared
/// statements. Cheap to clone.
#[derive(Clone)]
pub struct BatchStore {
    pub(crate) session: Arc<Session>,
    pub(crate) statements: Arc<Statements>,
    pub(crate) max_concurrency: usize,
    pub(crate) read_concurrency: usize,
    pub(crate) top_terms: usize,
    pub(crate) max_range_days: u32,
    /// Rows the server returned to range reads (see [`BatchStore::rows_read`]).
    pub(crate) rows_read: Arc<AtomicU64>,
}

/// Every statement, prepared once per process.
pub(crate) struct Statements {
    pub insert_post_by_channel: PreparedStatement,
    pub insert_post_by_id: PreparedStatement,
    pub insert_mention: PreparedStatement,
    pub insert_channel_day: PreparedStatement,
    pub insert_month: PreparedStatement,
    pub select_hour: PreparedStatement,
    pub select_hour_range: PreparedStatement,
    pub select_post: PreparedStatement,
    pub delete_post_by_channel: PreparedStatement,
    pub delete_post_by_id: PreparedStatement,
    pub delete_mention: PreparedStatement,
    pub insert_deletion: PreparedStatement,
    pub select_deletion: PreparedStatement,
    pub select_mentions_range: PreparedStatement,
    pub select_channel_days: PreparedStatement,
    pub select_months: PreparedStatement,
    pub insert_rollup: PreparedStatement,
    pub select_rollups: PreparedStatement,
    pub insert_term: PreparedStatement,
    pub select_terms: PreparedStatement,
    pub delete_term: PreparedStatement,
    pub insert_watermark: PreparedStatement,
    pub select_watermark: PreparedStatement,
}

/// A keyspace name safe to put in CQL text: CQL's unquoted identifier rules.
pub(crate) fn check_keyspace(name: &str) -> Result<&str, BatchError> {
    let mut chars = name.chars();
    let valid = name.len() <= 48
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(BatchError::Config(format!(
            "keyspace {name:?} is not a letter followed by up to 47 letters, digits or underscores"
        )))
    }
}

fn consistency(level: config::Consistency) -> Consistency {
    match level {
        config::Consistency::Any => Consistency::Any,
        config::Consistency::One => Consistency::One,
        config::Consistency::Two => Consistency::Two,
        config::Consistency::Three => Consistency::Three,
        config::Consistency::Quorum => Consistency::Quorum,
        config::Consistency::All => Consistency::All,
        config::Consistency::LocalQuorum => Consistency::LocalQuorum,
        config::Consistency::EachQuorum => Consistency::EachQuorum,
        config::Consistency::LocalOne => Consistency::LocalOne,
    }
}

/// A driver session for `config`, not bound to a keyspace (the schema may not exist yet).
pub(crate) async fn open_session(config: &BatchConfig) -> Result<Session, BatchError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if !config.local_datacenter.is_empty() {
        policy = policy
            .prefer_datacenter(config.local_datacenter.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(consistency(config.consistency))
        .request_timeout(Some(Duration::from_millis(
            config.request_timeout_ms.max(1),
        )))
        .load_balancing_policy(policy.build())
        .build();
    let nodes: Vec<&str> = config
        .nodes
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .collect();
    if nodes.is_empty() {
        return Err(BatchError::Config("batch.nodes names no node".into()));
    }
    let mut builder = SessionBuilder::new()
        .known_nodes(&nodes)
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms.max(1)))
        .default_execution_profile_handle(profile.into_handle());
    if !config.username.is_empty() {
        builder = builder.user(&config.username, &config.password);
    }
    builder.build().await.map_err(|e| BatchError::Connect {
        nodes: config.nodes.clone(),
        detail: e.to_string(),
    })
}

impl BatchStore {
    /// Connects and prepares every statement; fails if a node cannot be reached or the
    /// schema has not been applied (`pulse schema apply`).
    pub async fn connect(config: &BatchConfig) -> Result<Self, BatchError> {
        let keyspace = check_keyspace(&config.keyspace)?;
        let session = open_session(config).await?;
        let statements = Statements::prepare(&session, keyspace, config.page_size.max(1)).await?;
        Ok(Self {
            session: Arc::new(session),
            statements: Arc::new(statements),
            max_concurrency: config.max_concurrency.max(1),
            read_concurrency: config.read_concurrency.max(1),
            top_terms: config.top_terms.max(1),
            max_range_days: config.max_range_days.max(1),
            rows_read: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Every row of one partition read by `statement`, page by page.
    pub(crate) async fn read_partition<R>(
        &self,
        statement: &PreparedStatement,
        key: impl SerializeRow,
    ) -> Result<Vec<R>, BatchError>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata> + Send + 'static,
    {
        self.session
            .execute_iter(statement.clone(), key)
            .await
            .map_err(|e| cql("read", e))?
            .rows_stream::<R>()
            .map_err(|e| cql("read", e))?
            .try_collect()
            .await
            .map_err(|e| cql("read", e))
    }

    /// Runs a statement that returns no rows.
    pub(crate) async fn run(
        &self,
        action: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<(), BatchError> {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map(|_| ())
            .map_err(|error| {
                if refused_for_good(&error) {
                    BatchError::Refused {
                        action,
                        detail: error.to_string(),
                    }
                } else {
                    cql(action, error)
                }
            })
    }
}

/// Whether `error` is about the values of the request, so that sending them again can
/// never succeed: the driver cannot serialize them (a partition key over 64 KiB), or the
/// node answers Invalid about them. An Invalid about the schema (a table or keyspace
/// missing) is the operator's to fix and worth retrying.
fn refused_for_good(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::SerializationError(_)
            | RequestAttemptError::CqlRequestSerialization(_) => true,
            RequestAttemptError::DbError(DbError::Invalid, message) => {
                let message = message.to_ascii_lowercase();
                !(message.contains("unconfigured table")
                    || message.contains("keyspace")
                    || message.contains("does not exist"))
            }
            _ => false,
        },
        _ => false,
    }
}

impl Statements {
    async fn prepare(session: &Session, ks: &str, page_size: i32) -> Result<Self, BatchError> {
        let prepare = |text: String| async move {
            let mut statement = session.prepare(text.as_str()).await.map_err(|e| {
                cql(
                    "prepare",
                    format!("{e} (has `pulse schema apply` run for keyspace {ks}?)"),
                )
            })?;
            // Every statement is an upsert, a delete by key or a read: safe to retry.
            statement.set_is_idempotent(true);
            statement.set_page_size(page_size);
            Ok::<_, BatchError>(statement)
        };
        Ok(Self {
            insert_post_by_channel: prepare(format!(
                "INSERT INTO {ks}.posts_by_channel (channel, hour, created_at, id, sentiment, \
                 score, post) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            insert_post_by_id: prepare(format!(
                "INSERT INTO {ks}.posts_by_id (id, channel, created_at, post) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            insert_mention: prepare(format!(
                "INSERT INTO {ks}.mentions (kind, term, day, created_at, post_id, channel) \
                 VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            insert_channel_day: prepare(format!(
                "INSERT INTO {ks}.channel_days (month, day, channel) VALUES (?, ?, ?)"
            ))
            .await?,
            insert_month: prepare(format!(
                "INSERT INTO {ks}.history_months (scope, month) VALUES (?, ?)"
            ))
            .await?,
            select_hour: prepare(format!(
                "SELECT created_at, id, sentiment, post FROM {ks}.posts_by_channel \
                 WHERE channel = ? AND hour = ?"
            ))
            .await?,
            select_hour_range: prepare(format!(
                "SELECT created_at, id, sentiment, post FROM {ks}.posts_by_channel \
                 WHERE channel = ? AND hour = ? AND created_at >= ? AND created_at < ?"
            ))
            .await?,
            select_post: prepare(format!("SELECT post FROM {ks}.posts_by_id WHERE id = ?")).await?,
            delete_post_by_channel: prepare(format!(
                "DELETE FROM {ks}.posts_by_channel WHERE channel = ? AND hour = ? \
                 AND created_at = ? AND id = ?"
            ))
            .await?,
            delete_post_by_id: prepare(format!("DELETE FROM {ks}.posts_by_id WHERE id = ?"))
                .await?,
            delete_mention: prepare(format!(
                "DELETE FROM {ks}.mentions WHERE kind = ? AND term = ? AND day = ? \
                 AND created_at = ? AND post_id = ?"
            ))
            .await?,
            insert_deletion: prepare(format!(
                "INSERT INTO {ks}.deleted_posts (id, channel, created_at, deleted_at, reason) \
                 VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            select_deletion: prepare(format!(
                "SELECT deleted_at, reason FROM {ks}.deleted_posts WHERE id = ?"
            ))
            .await?,
            select_mentions_range: prepare(format!(
                "SELECT created_at, post_id FROM {ks}.mentions WHERE kind = ? AND term = ? \
                 AND day = ? AND created_at >= ? AND created_at < ?"
            ))
            .await?,
            select_channel_days: prepare(format!(
                "SELECT day, channel FROM {ks}.channel_days WHERE month = ?"
            ))
            .await?,
            select_months: prepare(format!(
                "SELECT month FROM {ks}.history_months WHERE scope = ?"
            ))
            .await?,
            insert_rollup: prepare(format!(
                "INSERT INTO {ks}.channel_rollups (channel, granularity, year, bucket, posts, \
                 negative, neutral, positive, scored, score_micros, emotion_micros, \
                 languages, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            select_rollups: prepare(format!(
                "SELECT bucket, posts, negative, neutral, positive, scored, score_micros, \
                 emotion_micros, languages, computed_at FROM {ks}.channel_rollups \
                 WHERE channel = ? AND granularity = ? AND year = ?"
            ))
            .await?,
            insert_term: prepare(format!(
                "INSERT INTO {ks}.term_rollups (channel, granularity, bucket, kind, term, posts) \
                 VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            select_terms: prepare(format!(
                "SELECT kind, term, posts FROM {ks}.term_rollups \
                 WHERE channel = ? AND granularity = ? AND bucket = ?"
            ))
            .await?,
            delete_term: prepare(format!(
                "DELETE FROM {ks}.term_rollups WHERE channel = ? AND granularity = ? \
                 AND bucket = ? AND kind = ? AND term = ?"
            ))
            .await?,
            insert_watermark: prepare(format!(
                "INSERT INTO {ks}.batch_watermark (view_name, exact_until, updated_at) \
                 VALUES (?, ?, ?)"
            ))
            .await?,
            select_watermark: prepare(format!(
                "SELECT exact_until FROM {ks}.batch_watermark WHERE view_name = ?"
            ))
            .await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_are_checked() {
        assert!(check_keyspace("pulse_test_01").is_ok());
        for bad in ["", "1pulse", "pulse;DROP", "pulse-x", &"k".repeat(49)] {
            assert!(check_keyspace(bad).is_err(), "{bad}");
        }
    }
}
