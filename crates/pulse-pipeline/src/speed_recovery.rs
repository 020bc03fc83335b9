//! Recovery of the speed layer from a Redis that lost acknowledged writes (a crash after
//! its last snapshot, a failover to a replica that lagged): the sink's offsets were
//! committed, so the lost posts would otherwise never come back.
//!
//! Redis records, with every applied post and in the same script, the post's offset per
//! channel and partition ([`SpeedLayer::positions`]). Whenever the sink finds a Redis
//! process it has not checked yet (its start, and any change of `run_id`), before applying
//! anything to it, it compares those positions with the group's committed offsets and
//! replays into the speed layer what Redis does not hold. Applying is idempotent (seen
//! marks), so overlapping with the live consumer costs time, never a double count.
//!
//! The connection reconnects by itself, so a Redis that restarts while a batch or a
//! catch-up is applied can take the rest of it: then its positions cover offsets whose
//! predecessors it never got. The server is therefore checked again after each batch and
//! each catch-up, under the same lock as the check before it; a change in between means the
//! new process's positions cannot be trusted, and it is caught up over the whole retention.
//! So does a change found after writes that could not be confirmed (the check after them
//! timed out, or the catch-up failed after retrying onto a new process). A batch whose
//! apply failed needs no such care: the connection moves to a new process only after a
//! command fails, and every Redis call of this sink is serialized by the lock, so a single
//! attempt's commands all went to the process checked just before them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pulse_core::PulseConfig;
use pulse_kafka::replay::{group_partitions, ReplayRange, ReplayStart};
use pulse_speed::SpeedLayer;
use rdkafka::producer::FutureProducer;
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

use crate::catalogue::StageKind;
use crate::metrics::PipelineMetrics;
use crate::replay::Replayer;
use crate::stage::StageError;

/// How often an idle sink checks whether Redis restarted (a busy one checks every batch).
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The future of [`SpeedRecovery::ensure_current`].
pub type Checked<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Current<'a>, StageError>> + Send + 'a>,
>;

/// What the sink knows of the Redis process it applies to.
#[derive(Debug, Default)]
struct Known {
    /// The `run_id` of the process last found holding what was committed; `None` until the
    /// first check.
    server: Option<String>,
    /// A process writes went to without it being confirmed after them (a catch-up that
    /// failed, a batch whose confirmation could not ask): if another one answers next, it
    /// may have taken them instead.
    unconfirmed: Option<String>,
    /// Whether a process that replaced it may have taken part of a batch or a catch-up
    /// without its predecessors: its positions are then not to be trusted.
    tainted: bool,
}

/// Proof that Redis held what was committed when the batch began; held while the batch is
/// applied (no catch-up runs meanwhile), then [`Current::confirm`]ed.
pub struct Current<'a> {
    known: MutexGuard<'a, Known>,
    layer: &'a SpeedLayer,
}

impl Current<'_> {
    /// Checks that the batch went to the process checked before it. If Redis was replaced
    /// meanwhile, the new process may hold the batch (or part of it) without what came
    /// before: the batch fails, to be retried after a catch-up that ignores positions.
    pub async fn confirm(mut self) -> Result<(), StageError> {
        let server = match self.layer.server_id().await {
            Ok(server) => server,
            Err(error) => {
                self.known.unconfirmed = self.known.server.clone();
                return Err(unavailable(error));
            }
        };
        if self.known.server.as_deref() == Some(server.as_str()) {
            return Ok(());
        }
        self.known.tainted = true;
        Err(StageError(format!(
            "redis was replaced while the batch was applied (now {server}); catching it up"
        )))
    }
}

/// Keeps the speed layer holding everything its consumer group committed.
pub struct SpeedRecovery {
    layer: SpeedLayer,
    replayer: Replayer,
    kafka: pulse_core::config::KafkaConfig,
    group: String,
    topic: String,
    retention_secs: u64,
    /// Held while checking, catching up and applying a batch, so they never overlap.
    known: Mutex<Known>,
    shutdown: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// This process's first check: nothing applied by it yet, so the live consumer starts
    /// at the committed offsets; Redis must hold everything before them.
    Start,
    /// Redis changed under a running sink, which may have applied (but not committed)
    /// records past the committed offsets: Redis must hold everything up to the end.
    Restart,
}

impl SpeedRecovery {
    /// A recovery for the speed sink of `config` (group `speed.group`, the enriched topic),
    /// replaying through `producer` (for dead letters); ends with `shutdown`.
    pub fn new(
        config: &PulseConfig,
        layer: SpeedLayer,
        metrics: PipelineMetrics,
        producer: FutureProducer,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            replayer: Replayer::new(config, metrics, producer).with_speed(layer.clone()),
            layer,
            kafka: config.kafka.clone(),
            group: config.speed.group.clone(),
            topic: config.kafka.topics.enriched.clone(),
            retention_secs: config.speed.retention_secs,
            known: Mutex::new(Known::default()),
            shutdown,
        }
    }

    /// Checks the Redis process that answers, catching it up first if it is new to this
    /// sink. Called before every batch is applied; the batch then holds the answer until
    /// it is confirmed ([`Current::confirm`]).
    ///
    /// Boxed: the catch-up replays through a speed sink stage, whose batches call this.
    pub fn ensure_current(&self) -> Checked<'_> {
        Box::pin(async move {
            let mut known = self.known.lock().await;
            let server = self.layer.server_id().await.map_err(unavailable)?;
            if known
                .unconfirmed
                .take()
                .is_some_and(|wrote| wrote != server)
            {
                known.tainted = true;
            }
            if known.server.as_deref() == Some(server.as_str()) && !known.tainted {
                return Ok(Current {
                    known,
                    layer: &self.layer,
                });
            }
            let moment = match known.server.as_ref() {
                None => Moment::Start,
                Some(_) => Moment::Restart,
            };
            known.unconfirmed = Some(server.clone());
            self.catch_up(moment, &server, !known.tainted).await?;
            // The replay went to whichever process answered: if Redis was replaced during
            // it, the new one holds the replay's end without its beginning.
            let after = self.layer.server_id().await.map_err(unavailable)?;
            if after != server {
                known.tainted = true;
                return Err(StageError(format!(
                    "redis was replaced while it was caught up (now {after}); catching it up again"
                )));
            }
            known.server = Some(server);
            known.unconfirmed = None;
            known.tainted = false;
            Ok(Current {
                known,
                layer: &self.layer,
            })
        })
    }

    /// Checks every few seconds while no batch comes (a Redis crash in a quiet moment is
    /// repaired without waiting for the next post), until shutdown.
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(IDLE_CHECK) => {}
            }
            if let Err(error) = self.ensure_current().await {
                tracing::debug!(%error, "speed layer check failed; next try soon");
            }
        }
    }

    /// Replays into Redis what it lacks of what the group passed: from each partition's
    /// recorded position, or from the start of the retention when positions are not
    /// trusted.
    async fn catch_up(
        &self,
        moment: Moment,
        server: &str,
        trust_positions: bool,
    ) -> Result<(), StageError> {
        // Checked, and not before 1970 (Kafka reads negative times as "earliest" and
        // "latest" markers): a retention from configuration may reach past the calendar.
        let since = i64::try_from(self.retention_secs)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .and_then(|retention| Utc::now().checked_sub_signed(retention))
            .map_or(chrono::DateTime::UNIX_EPOCH, |since| {
                since.max(chrono::DateTime::UNIX_EPOCH)
            });
        let partitions = group_partitions(&self.kafka, &self.group, &self.topic, since)
            .await
            .map_err(|e| StageError(format!("cannot read the group's offsets: {e}")))?;
        // Read before anything more is applied: what this Redis process really holds.
        let positions = self
            .layer
            .positions(&self.topic)
            .await
            .map_err(unavailable)?;
        let mut starts = std::collections::BTreeMap::new();
        let mut missing = 0;
        for partition in partitions {
            // A group that never committed reads the partition from its reset policy.
            let Some(committed) = partition.committed else {
                continue;
            };
            // Without a position, Redis holds nothing of the partition within retention.
            let start = positions
                .get(&partition.partition)
                .filter(|_| trust_positions)
                .map_or(partition.since, |&at| at + 1)
                .max(partition.low);
            let end = match moment {
                Moment::Start => committed,
                Moment::Restart => partition.high,
            };
            if start < end {
                missing += end - start;
                starts.insert(partition.partition, start);
            }
        }
        if starts.is_empty() {
            tracing::info!(
                redis = server,
                ?moment,
                "speed layer holds what was committed"
            );
            return Ok(());
        }
        tracing::warn!(
            redis = server,
            ?moment,
            trust_positions,
            partitions = starts.len(),
            offsets = missing,
            "speed layer lacks records its group passed (redis lost writes); re-applying them"
        );
        let range = ReplayRange {
            topic: self.topic.clone(),
            start: ReplayStart::Offsets(starts),
            end: None,
        };
        let failed = |e| StageError(format!("cannot re-apply what redis lost: {e}"));
        let mut reader = self
            .replayer
            .open(StageKind::SinkSpeed, range)
            .await
            .map_err(failed)?;
        let report = self
            .replayer
            .run(StageKind::SinkSpeed, &mut reader, &|_| {}, &self.shutdown)
            .await
            .map_err(failed)?;
        if !report.complete {
            return Err(StageError(
                "re-applying what redis lost was interrupted".into(),
            ));
        }
        tracing::info!(
            redis = server,
            replayed = report.progress.replayed,
            "speed layer caught up with its group"
        );
        Ok(())
    }
}

fn unavailable(error: pulse_speed::SpeedError) -> StageError {
    StageError(format!("speed layer: {error}"))
}
