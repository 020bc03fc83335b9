//! The archive's Parquet files: their columns, the rows an enriched post becomes, and the
//! read-merge-write that keeps each record once in its file.
//!
//! A file is never changed in place: its new content is written to a temporary name in the
//! same folder (a leading `.`, which DuckDB, pyarrow and Spark skip), synced, and renamed
//! over the old one, so a reader or a crash sees the old file or the new one, whole.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use pulse_core::config::ArchiveCompression;
use pulse_core::{EnrichedPost, Entity, Keyword, SentimentLabel};
use serde::Serialize;

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parquet { path: String, source: ParquetError },
    #[error("{path}: {source}")]
    Arrow { path: String, source: ArrowError },
    #[error("{path} has other columns than this version of pulse writes; move it aside")]
    OtherSchema { path: String },
}

impl TableError {
    /// `map_err` adapters that name the file or folder at `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| TableError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn arrow(path: &Path) -> impl FnOnce(ArrowError) -> Self + '_ {
        move |source| TableError::Arrow {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn parquet(path: &Path) -> impl FnOnce(ParquetError) -> Self + '_ {
        move |source| TableError::Parquet {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The columns of an archive file. The channel, date and hour are in the folder names.
pub fn schema() -> SchemaRef {
    // An offset rather than "UTC": arrow names zones only with the chrono-tz tables.
    let utc = || DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let score = |name: &str| Field::new(name, DataType::Float32, true);
    let entity = Fields::from(vec![
        text("text", false),
        text("kind", false),
        Field::new("start", DataType::Int64, false),
        Field::new("end", DataType::Int64, false),
        Field::new("score", DataType::Float32, false),
    ]);
    let keyword = Fields::from(vec![
        text("term", false),
        Field::new("score", DataType::Float32, false),
    ]);
    Arc::new(Schema::new(vec![
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        text("id", false),
        text("source", false),
        text("author", true),
        text("text", false),
        Field::new("created_at", utc(), false),
        text("url", true),
        text("lang", true),
        text("parent_id", true),
        // Free-form objects, as JSON text.
        text("meta", true),
        text("extra", true),
        text("sentiment_label", true),
        score("sentiment_score"),
        score("sentiment_negative"),
        score("sentiment_neutral"),
        score("sentiment_positive"),
        Field::new_map(
            "emotions",
            "entries",
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Float32, false),
            false,
            false,
        ),
        Field::new_list(
            "entities",
            Field::new_list_field(DataType::Struct(entity), false),
            false,
        ),
        Field::new_list(
            "keywords",
            Field::new_list_field(DataType::Struct(keyword), false),
            false,
        ),
        text("model", false),
        Field::new("enriched_at", utc(), false),
    ]))
}

/// One row: an enriched post and the record it came in, shaped as [`schema`] says.
#[derive(Debug, Serialize)]
struct Row<'a> {
    kafka_partition: i32,
    kafka_offset: i64,
    id: &'a str,
    source: &'a str,
    author: Option<&'a str>,
    text: &'a str,
    created_at: DateTime<Utc>,
    url: Option<&'a str>,
    lang: Option<&'a str>,
    parent_id: Option<&'a str>,
    meta: Option<String>,
    extra: Option<String>,
    sentiment_label: Option<&'a str>,
    sentiment_score: Option<f32>,
    sentiment_negative: Option<f32>,
    sentiment_neutral: Option<f32>,
    sentiment_positive: Option<f32>,
    emotions: &'a BTreeMap<String, f32>,
    entities: &'a [Entity],
    keywords: &'a [Keyword],
    model: &'a str,
    enriched_at: DateTime<Utc>,
}

/// An enriched post with the partition and offset of its record.
#[derive(Debug, Clone)]
pub struct ArchivedPost {
    pub partition: i32,
    pub offset: i64,
    pub post: EnrichedPost,
}

impl<'a> Row<'a> {
    fn of(archived: &'a ArchivedPost) -> Self {
        let ArchivedPost {
            partition,
            offset,
            post: enriched,
        } = archived;
        let post = &enriched.post;
        let sentiment = enriched.enrichment.sentiment.as_ref();
        let prob = |label| sentiment.and_then(|s| s.probs.get(&label).copied());
        let object = |map: &serde_json::Map<String, serde_json::Value>| {
            (!map.is_empty()).then(|| serde_json::Value::Object(map.clone()).to_string())
        };
        Row {
            kafka_partition: *partition,
            kafka_offset: *offset,
            id: &post.id,
            source: &post.source,
            author: post.author.as_deref(),
            text: &post.text,
            created_at: post.created_at,
            url: post.url.as_deref(),
            lang: post.lang.as_deref(),
            parent_id: post.parent_id.as_deref(),
            meta: object(&post.meta),
            extra: object(&post.extra),
            sentiment_label: sentiment.map(|s| s.label.as_str()),
            sentiment_score: sentiment.map(|s| s.score),
            sentiment_negative: prob(SentimentLabel::Negative),
            sentiment_neutral: prob(SentimentLabel::Neutral),
            sentiment_positive: prob(SentimentLabel::Positive),
            emotions: &enriched.enrichment.emotions,
            entities: &enriched.enrichment.entities,
            keywords: &enriched.enrichment.keywords,
            model: &enriched.model,
            enriched_at: enriched.enriched_at,
        }
    }
}

/// `posts` as one record batch of [`schema`].
pub fn to_batch(posts: &[ArchivedPost]) -> Result<RecordBatch, ArrowError> {
    let schema = schema();
    let rows: Vec<Row> = posts.iter().map(Row::of).collect();
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone()).build_decoder()?;
    decoder.serialize(&rows)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// The rows of the file at `path`, or `None` if there is no such file.
pub fn read(path: &Path) -> Result<Option<RecordBatch>, TableError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(TableError::io(path)(error)),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .map_err(TableError::parquet(path))?;
    let schema = schema();
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(TableError::arrow(path))?;
        if batch.schema().fields() != schema.fields() {
            return Err(TableError::OtherSchema {
                path: path.display().to_string(),
            });
        }
        batches.push(batch);
    }
    arrow_select::concat::concat_batches(&schema, &batches)
        .map(Some)
        .map_err(TableError::arrow(path))
}

/// `existing` and `incoming` as one batch ordered by offset; a record of `incoming` replaces
/// the row of the same offset in `existing`, so merging the same records again changes
/// nothing.
pub fn merge(
    existing: Option<&RecordBatch>,
    incoming: &RecordBatch,
) -> Result<RecordBatch, ArrowError> {
    let schema = schema();
    let merged = match existing {
        None => incoming.clone(),
        Some(existing) => {
            let replaced: HashSet<i64> = offsets(incoming)?.collect();
            let keep: BooleanArray = offsets(existing)?
                .map(|offset| Some(!replaced.contains(&offset)))
                .collect();
            let kept = arrow_select::filter::filter_record_batch(existing, &keep)?;
            arrow_select::concat::concat_batches(&schema, [&kept, incoming])?
        }
    };
    let order = arrow_ord::sort::sort_to_indices(column(&merged, "kafka_offset")?, None, None)?;
    arrow_select::take::take_record_batch(&merged, &order)
}

/// `rows` without the posts whose id is in `ids`, and how many were removed.
pub fn without(
    rows: &RecordBatch,
    ids: &HashSet<&str>,
) -> Result<(RecordBatch, usize), ArrowError> {
    let keep: BooleanArray = column(rows, "id")?
        .as_string::<i32>()
        .iter()
        .map(|id| Some(!id.is_some_and(|id| ids.contains(id))))
        .collect();
    let removed = keep.false_count();
    Ok((
        arrow_select::filter::filter_record_batch(rows, &keep)?,
        removed,
    ))
}

fn column<'b>(rows: &'b RecordBatch, name: &str) -> Result<&'b arrow_array::ArrayRef, ArrowError> {
    rows.column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))
}

fn offsets(rows: &RecordBatch) -> Result<impl Iterator<Item = i64> + '_, ArrowError> {
    let offsets = column(rows, "kafka_offset")?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| ArrowError::SchemaError("kafka_offset is not int64".into()))?;
    Ok(offsets.values().iter().copied())
}

/// Replaces the file at `path` with `rows` (temporary file, sync, rename, sync of the
/// folder); an empty `rows` removes the file.
pub fn replace(
    path: &Path,
    rows: &RecordBatch,
    compression: ArchiveCompression,
) -> Result<(), TableError> {
    let io = |source| TableError::io(path)(source);
    let parquet = |source| TableError::parquet(path)(source);
    let folder = path.parent().unwrap_or(Path::new("."));
    if rows.num_rows() == 0 {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
        return sync_folder(folder).map_err(io);
    }
    std::fs::create_dir_all(folder).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Writers hold the folder's lock (see `lock_folder`); the process id is a second guard.
    let temporary = folder.join(format!(".{name}.{}.tmp", std::process::id()));
    let properties = WriterProperties::builder()
        .set_compression(match compression {
            ArchiveCompression::None => Compression::UNCOMPRESSED,
            ArchiveCompression::Snappy => Compression::SNAPPY,
            ArchiveCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        })
        .build();
    let file = File::create(&temporary).map_err(io)?;
    let mut writer =
        ArrowWriter::try_new(file, rows.schema(), Some(properties)).map_err(parquet)?;
    writer.write(rows).map_err(parquet)?;
    let file = writer.into_inner().map_err(parquet)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io)?;
    sync_folder(folder).map_err(io)
}

/// An exclusive lock on `folder` (created if absent), held until the returned file is
/// dropped: two processes (a rebalance's old and new owner of a partition) never interleave
/// their read-merge-writes of one folder's files, so neither loses the other's rows. The
/// temporary files a writer killed mid-write left in the folder are removed: while the lock
/// is held no other writer is at work there.
pub fn lock_folder(folder: &Path) -> Result<File, TableError> {
    let io = |source| TableError::io(folder)(source);
    std::fs::create_dir_all(folder).map_err(io)?;
    let handle = File::open(folder).map_err(io)?;
    handle.lock().map_err(io)?;
    remove_temporaries(folder).map_err(io)?;
    Ok(handle)
}

/// Removes the `.<name>.<pid>.tmp` files of [`replace`] from `folder`.
fn remove_temporaries(folder: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".tmp")) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => tracing::info!(
                file = %entry.path().display(),
                "removed a temporary file left by a writer that stopped mid-write"
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Makes a rename or removal in `folder` durable.
fn sync_folder(folder: &Path) -> std::io::Result<()> {
    File::open(folder)?.sync_all()
}
