//! Where a post lives in the archive: one folder per channel, date and hour (Hive-style
//! `key=value` names, which DuckDB, pyarrow and Spark read as columns), and in it one file
//! per topic, partition and block of offsets.
//!
//! A record's file depends on nothing but the record (its post's channel and creation time,
//! its topic, partition and offset), never on how records were batched: a redelivery or a
//! replay finds the same file again, which is what makes the sink effectively-once.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes: characters kept as they are in a channel folder's name: letters, digits, `-`,
/// `_`, `.`; everything else is percent-encoded (`reddit/r/rust` is `reddit%2Fr%2Frust`),
/// as Hive, Spark and pyarrow decode it.
const CHANNEL_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// Longest encoded channel a folder name holds (file systems allow 255 bytes per name).
pub const MAX_CHANNEL_FOLDER_BYTES: usize = 240;

/// The file a record goes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArchiveFile {
    /// `channel=<encoded channel>/date=<YYYY-MM-DD>/hour=<HH>`, relative to the root.
    pub folder: PathBuf,
    pub topic: String,
    pub partition: i32,
    /// First offset of the block.
    pub first: i64,
    /// Last offset of the block (inclusive).
    pub last: i64,
}

/// Why a post has no place in the archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unplaceable {
    #[error("channel is {0} bytes once encoded for a folder name; the archive takes at most {MAX_CHANNEL_FOLDER_BYTES}")]
    ChannelTooLong(usize),
    #[error("the topic name {0:?} cannot be part of a file name")]
    Topic(String),
}

impl ArchiveFile {
    /// The file of the record at `offset` of `topic`/`partition` carrying a post of
    /// `channel` created at `created_at`, with `block_offsets` offsets per file.
    pub fn of(
        channel: &str,
        created_at: DateTime<Utc>,
        topic: &str,
        partition: i32,
        offset: i64,
        block_offsets: u64,
    ) -> Result<Self, Unplaceable> {
        let folder = hour_folder(channel, created_at)?;
        // Kafka topic names are [a-zA-Z0-9._-]; a replay may name any topic, so check.
        if topic.is_empty()
            || !topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(Unplaceable::Topic(topic.to_string()));
        }
        let block = i64::try_from(block_offsets.max(1)).unwrap_or(i64::MAX);
        let first = offset.div_euclid(block) * block;
        Ok(Self {
            folder,
            topic: topic.to_string(),
            partition,
            first,
            last: first.saturating_add(block - 1),
        })
    }

    /// The file's name: `<topic>-<partition>-<first>-<last>.parquet`, offsets zero-padded
    /// so that names sort by offset.
    pub fn name(&self) -> String {
        format!(
            "{}-{}-{:020}-{:020}.parquet",
            self.topic, self.partition, self.first, self.last
        )
    }

    /// The file's path under `root`.
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join(&self.folder).join(self.name())
    }
}

/// The folder of the posts of `channel` created in the hour of `created_at`.
pub fn hour_folder(channel: &str, created_at: DateTime<Utc>) -> Result<PathBuf, Unplaceable> {
    let encoded = utf8_percent_encode(channel, CHANNEL_ESCAPES).to_string();
    if encoded.len() > MAX_CHANNEL_FOLDER_BYTES {
        return Err(Unplaceable::ChannelTooLong(encoded.len()));
    }
    Ok(PathBuf::from(format!("channel={encoded}"))
        .join(created_at.format("date=%Y-%m-%d").to_string())
        .join(created_at.format("hour=%H").to_string()))
}

/// Whether `name` is a finished archive file (not a temporary one being written).
pub fn is_archive_file(name: &str) -> bool {
    name.ends_with(".parquet") && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_record_file_depends_only_on_the_record() {
        let file = ArchiveFile::of(
            "reddit/r/rust",
            at("2026-12-03T05:59:59.999Z"),
            "pulse.posts.enriched",
            3,
            41_999,
            20_000,
        )
        .unwrap();
        assert_eq!(
            file.path(Path::new("/a")),
            Path::new("/a/channel=reddit%2Fr%2Frust/date=2026-12-03/hour=05/pulse.posts.enriched-3-00000000000000040000-00000000000000059999.parquet")
        );
        let next = ArchiveFile::of(
            "reddit/r/rust",
            at("2026-12-03T05:00:00Z"),
            "pulse.posts.enriched",
            3,
            40_000,
            20_000,
        )
        .unwrap();
        assert_eq!(file, next);
        let other_block = ArchiveFile::of(
            "reddit/r/rust",
            at("2026-12-03T05:00:00Z"),
            "pulse.posts.enriched",
            3,
            39_999,
            20_000,
        )
        .unwrap();
        assert_eq!((other_block.first, other_block.last), (20_000, 39_999));
    }

    #[test]
    fn channels_are_encoded_for_folder_names() {
        let folder = hour_folder("twitter/#rust lang=é", at("2026-01-02T23:10:00Z")).unwrap();
        assert_eq!(
            folder,
            Path::new("channel=twitter%2F%23rust%20lang%3D%C3%A9/date=2026-01-02/hour=23")
        );
        assert_eq!(
            hour_folder("../..", at("2026-01-02T23:10:00Z")).unwrap(),
            Path::new("channel=..%2F../date=2026-01-02/hour=23"),
            "a channel never climbs out of the archive: its folder keeps the channel= prefix"
        );
        assert!(matches!(
            hour_folder(&"/".repeat(81), at("2026-01-02T23:10:00Z")),
            Err(Unplaceable::ChannelTooLong(243))
        ));
    }

    #[test]
    fn odd_topics_and_temporary_files_are_told_apart() {
        let at = at("2026-01-02T23:10:00Z");
        assert!(ArchiveFile::of("c", at, "../t", 0, 0, 10).is_err());
        assert!(ArchiveFile::of("c", at, "", 0, 0, 10).is_err());
        assert!(is_archive_file(
            "t-0-00000000000000000000-00000000000000000009.parquet"
        ));
        assert!(!is_archive_file(".t-0-1-2.parquet.123.tmp"));
        assert!(!is_archive_file(".t-0-1-2.parquet"));
    }
}
