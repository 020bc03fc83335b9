//! Where the speed layer is in the log, read back from Redis, and which Redis process
//! answers. A sink compares the two with its committed offsets to find what a Redis crash
//! lost (counts applied and acknowledged, then gone with an unsaved snapshot).

use std::collections::BTreeMap;

use crate::{SpeedError, SpeedLayer};

impl SpeedLayer {
    /// Per partition of `topic`, the highest offset applied to any channel, as Redis holds
    /// it now. Partitions without a recorded position are absent (nothing applied within
    /// the retention, or the data predates positions).
    pub async fn positions(&self, topic: &str) -> Result<BTreeMap<i32, i64>, SpeedError> {
        let mut connection = self.connection.clone();
        let channels: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.channels())
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await?;
        let mut positions = BTreeMap::new();
        // A pipeline of a few hundred channels at a time: one round trip each, bounded replies.
        for chunk in channels.chunks(256) {
            let mut pipe = redis::pipe();
            for channel in chunk {
                pipe.cmd("HGETALL").arg(self.keys.positions(channel));
            }
            let tables: Vec<BTreeMap<String, i64>> = pipe.query_async(&mut connection).await?;
            for (field, offset) in tables.into_iter().flatten() {
                let Some((field_topic, partition)) = field.rsplit_once(':') else {
                    continue;
                };
                let Ok(partition) = partition.parse::<i32>() else {
                    continue;
                };
                if field_topic == topic {
                    let at = positions.entry(partition).or_insert(offset);
                    *at = (*at).max(offset);
                }
            }
        }
        Ok(positions)
    }

    /// The `run_id` of the Redis process that answers: it changes when Redis restarts (and
    /// may have lost what it had not saved) or when a replica takes over.
    pub async fn server_id(&self) -> Result<String, SpeedError> {
        let mut connection = self.connection.clone();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await?;
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_string())
            .ok_or_else(|| SpeedError::Answer("INFO has no run_id".into()))
    }
}
