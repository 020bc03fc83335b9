//! Which offsets may be committed.
//!
//! Records of a partition finish out of order (batches overlap, deliveries complete when they
//! do). The committable offset of a partition is the lowest offset still in flight, or one
//! past the highest consumed when nothing is: everything below it is fully handled.

use std::collections::{BTreeMap, BTreeSet};

/// A topic and partition.
pub type TopicPartition = (String, i32);

#[derive(Debug, Default)]
struct PartitionOffsets {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset consumed.
    next: i64,
    /// The last offset committed (or found committable and handed out), -1 when none yet.
    committed: i64,
}

impl PartitionOffsets {
    fn watermark(&self) -> i64 {
        self.in_flight.first().copied().unwrap_or(self.next)
    }
}

/// In-flight offsets per partition and what may be committed.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<TopicPartition, PartitionOffsets>,
}

impl OffsetTracker {
    /// Records that `offset` was handed to processing.
    pub fn consumed(&mut self, topic: &str, partition: i32, offset: i64) {
        let entry = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_insert_with(|| PartitionOffsets {
                committed: -1,
                ..PartitionOffsets::default()
            });
        entry.in_flight.insert(offset);
        entry.next = entry.next.max(offset + 1);
    }

    /// Records that `offset` is fully handled (produced, written, or dead-lettered).
    ///
    /// Ignored for partitions no longer owned: their records were handled all the same, and
    /// the new owner resumes from what was committed.
    pub fn handled(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(entry) = self.partitions.get_mut(&(topic.to_string(), partition)) {
            entry.in_flight.remove(&offset);
        }
    }

    /// Partitions whose committable offset moved since it was last taken, with that offset;
    /// marks them as committed.
    pub fn take_committable(&mut self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter_mut()
            .filter_map(|(tp, entry)| {
                let watermark = entry.watermark();
                (watermark > entry.committed).then(|| {
                    entry.committed = watermark;
                    (tp.clone(), watermark)
                })
            })
            .collect()
    }

    /// Takes back offsets handed out by [`take_committable`](Self::take_committable) whose
    /// commit failed, so that they are offered again.
    pub fn uncommit(&mut self, offsets: &[(TopicPartition, i64)]) {
        for (tp, offset) in offsets {
            if let Some(entry) = self.partitions.get_mut(tp) {
                if entry.committed == *offset {
                    entry.committed = -1;
                }
            }
        }
    }

    /// Forgets a partition taken away by a rebalance, returning its committable offset if it
    /// moved. Keeping it would let this member commit a stale offset for a partition another
    /// member now owns, moving the group backwards.
    pub fn revoke(&mut self, topic: &str, partition: i32) -> Option<i64> {
        let entry = self.partitions.remove(&(topic.to_string(), partition))?;
        let watermark = entry.watermark();
        (watermark > entry.committed).then_some(watermark)
    }

    /// Records in flight over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        ("t".to_string(), p)
    }

    #[test]
    fn commits_only_below_the_lowest_unfinished_offset() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.consumed("t", 0, offset);
        }
        tracker.handled("t", 0, 11);
        tracker.handled("t", 0, 12);
        assert_eq!(tracker.take_committable(), vec![(tp(0), 10)]);
        assert_eq!(tracker.take_committable(), vec![]);
        tracker.handled("t", 0, 10);
        assert_eq!(tracker.take_committable(), vec![(tp(0), 13)]);
        tracker.handled("t", 0, 14);
        tracker.handled("t", 0, 13);
        assert_eq!(tracker.take_committable(), vec![(tp(0), 15)]);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = OffsetTracker::default();
        tracker.consumed("t", 0, 0);
        tracker.consumed("t", 1, 7);
        tracker.handled("t", 1, 7);
        assert_eq!(tracker.take_committable(), vec![(tp(0), 0), (tp(1), 8)]);
    }

    #[test]
    fn revoked_partitions_are_forgotten_and_late_completions_ignored() {
        let mut tracker = OffsetTracker::default();
        tracker.consumed("t", 0, 0);
        tracker.consumed("t", 0, 1);
        tracker.handled("t", 0, 0);
        assert_eq!(tracker.revoke("t", 0), Some(1));
        tracker.handled("t", 0, 1);
        assert_eq!(tracker.take_committable(), vec![]);
        assert_eq!(tracker.revoke("t", 0), None);
        // Re-assigned later, it starts from what the new fetch position says.
        tracker.consumed("t", 0, 1);
        assert_eq!(tracker.take_committable(), vec![(tp(0), 1)]);
    }
}
