//! The archive sink: enriched posts as Parquet files, one folder per channel, date and hour
//! (see [`layout`]), for DuckDB, pandas and Spark.
//!
//! Effectively-once: a record's file is a function of the record alone (its channel, hour,
//! topic, partition and block of offsets), and writing a batch merges its records into
//! their files by offset ([`table::merge`]) before each file is replaced whole by a rename.
//! The stage loop commits a batch's offsets only after `process` returns, so after a crash
//! the redelivered records are merged into the same files again, where they replace
//! themselves. A replay of the same range does the same. A tombstone removes its post from
//! the files of the post's channel and hour.

pub mod layout;
pub mod table;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use pulse_core::config::{ArchiveCompression, ArchiveConfig};
use pulse_core::{DeadLetterKind, Tombstone};

use crate::catalogue::StageKind;
use crate::stage::{enriched_records, Outcome, SourceRecord, Stage, StageError};
use layout::{hour_folder, is_archive_file, ArchiveFile};
use table::{ArchivedPost, TableError};

/// Writes enriched posts to the Parquet archive.
pub struct ArchiveSinkStage {
    archive: Arc<Archive>,
}

/// The archive's folder and how its files are cut and compressed.
#[derive(Debug, Clone)]
pub struct Archive {
    pub root: PathBuf,
    pub block_offsets: u64,
    pub compression: ArchiveCompression,
}

impl ArchiveSinkStage {
    pub fn new(config: &ArchiveConfig) -> Self {
        Self {
            archive: Arc::new(Archive {
                root: config.dir.clone(),
                block_offsets: config.block_offsets,
                compression: config.compression,
            }),
        }
    }
}

impl Stage for ArchiveSinkStage {
    fn kind(&self) -> StageKind {
        StageKind::SinkArchive
    }

    async fn process(&self, batch: &[SourceRecord]) -> Result<Vec<Outcome>, StageError> {
        let received = enriched_records(batch);
        let mut outcomes = received.outcomes;
        let mut files: BTreeMap<ArchiveFile, Vec<ArchivedPost>> = BTreeMap::new();
        for (post, _, index) in received.posts {
            let record = &batch[index];
            let file = ArchiveFile::of(
                &post.post.channel,
                post.post.created_at,
                &record.topic,
                record.partition,
                record.offset,
                self.archive.block_offsets,
            );
            match file {
                Ok(file) => files.entry(file).or_default().push(ArchivedPost {
                    partition: record.partition,
                    offset: record.offset,
                    post,
                }),
                Err(unplaceable) => {
                    outcomes[index] = Outcome::Reject {
                        kind: DeadLetterKind::InvalidForStore,
                        error: unplaceable.to_string(),
                    }
                }
            }
        }
        let tombstones: Vec<Tombstone> = received.tombstones.into_iter().map(|(t, _)| t).collect();
        let archive = self.archive.clone();
        // Parquet encoding and file system calls block: off the async workers.
        tokio::task::spawn_blocking(move || archive.write(&files, &tombstones))
            .await
            .map_err(|e| StageError(format!("archive writer panicked: {e}")))?
            .map_err(|e| StageError(format!("cannot write to the archive: {e}")))?;
        Ok(outcomes)
    }
}

impl Archive {
    /// Merges each file's posts into it, then removes the tombstones' posts (after: a post
    /// and its tombstone can share a batch).
    pub fn write(
        &self,
        files: &BTreeMap<ArchiveFile, Vec<ArchivedPost>>,
        tombstones: &[Tombstone],
    ) -> Result<(), TableError> {
        for (file, posts) in files {
            let path = file.path(&self.root);
            let _lock = table::lock_folder(&self.root.join(&file.folder))?;
            let incoming = table::to_batch(posts).map_err(TableError::arrow(&path))?;
            let existing = table::read(&path)?;
            let merged =
                table::merge(existing.as_ref(), &incoming).map_err(TableError::arrow(&path))?;
            table::replace(&path, &merged, self.compression)?;
        }
        self.delete(tombstones)
    }

    /// Removes the posts of `tombstones` from every file of their channel and hour.
    fn delete(&self, tombstones: &[Tombstone]) -> Result<(), TableError> {
        let mut by_folder: BTreeMap<PathBuf, HashSet<&str>> = BTreeMap::new();
        for tombstone in tombstones {
            // A channel too long for a folder was never archived.
            if let Ok(folder) = hour_folder(&tombstone.channel, tombstone.created_at) {
                by_folder
                    .entry(self.root.join(folder))
                    .or_default()
                    .insert(&tombstone.id);
            }
        }
        for (folder, ids) in by_folder {
            if !folder.is_dir() {
                continue;
            }
            let _lock = table::lock_folder(&folder)?;
            let entries = std::fs::read_dir(&folder).map_err(TableError::io(&folder))?;
            for entry in entries {
                let entry = entry.map_err(TableError::io(&folder))?;
                if !is_archive_file(&entry.file_name().to_string_lossy()) {
                    continue;
                }
                let path = entry.path();
                let Some(rows) = table::read(&path)? else {
                    continue;
                };
                let (kept, removed) =
                    table::without(&rows, &ids).map_err(TableError::arrow(&path))?;
                if removed > 0 {
                    table::replace(&path, &kept, self.compression)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
