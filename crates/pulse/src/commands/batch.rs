//! `pulse batch ...`: recompute the exact rollups, and read the history (posts, a post,
//! mentions, rollups) as JSON for operators and scripts.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pulse_batch::{BatchStore, Cursor, MentionQuery, PostPage, PostQuery, TermKind};
use pulse_core::time::parse_time;
use pulse_core::{EnrichedPost, Granularity, PulseConfig, SentimentLabel};
use serde_json::json;

use crate::console::{self, Output};

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Rebuild the exact hour and day rollups and top terms from the stored posts, then
    /// advance the batch watermark.
    Recompute(RecomputeArgs),
    /// A channel's stored posts in a time range, newest first: {"posts": [...], "next_cursor"}.
    Posts(PostsArgs),
    /// One stored post by id.
    Post {
        /// The post's id, e.g. reddit:t1_abc.
        id: String,
    },
    /// Stored posts mentioning a keyword or an entity, over every channel, newest first.
    Mentions(MentionsArgs),
    /// A channel's rollups with their top terms, one JSON object per bucket, oldest first.
    Rollups(RollupsArgs),
}

#[derive(Debug, Args)]
pub struct RecomputeArgs {
    /// Start (its whole day is recomputed); default: the watermark, or the first stored post.
    #[arg(long, value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// End, floored to the hour; default: the last hour that ended over 5 minutes ago.
    #[arg(long, value_parser = parse_time)]
    to: Option<DateTime<Utc>>,
}

/// `[from, to)` of a read.
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Start of the range, included: `now-1h`, RFC 3339 or YYYY-MM-DD.
    #[arg(long, value_parser = parse_time)]
    from: DateTime<Utc>,
    /// End of the range, excluded, in the same forms as `--from`.
    #[arg(long, value_parser = parse_time, default_value = "now")]
    to: DateTime<Utc>,
}

/// A page of posts in a range.
#[derive(Debug, Args)]
pub struct PageArgs {
    #[command(flatten)]
    range: RangeArgs,
    /// Posts per page.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// The next_cursor of the previous page.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Debug, Args)]
pub struct PostsArgs {
    /// The channel, e.g. reddit/r/rust.
    #[arg(long)]
    channel: String,
    #[command(flatten)]
    page: PageArgs,
    /// Only posts of this sentiment.
    #[arg(long, value_parser = super::choice::<SentimentLabel>(SentimentLabel::ALL.map(SentimentLabel::as_str)))]
    sentiment: Option<SentimentLabel>,
    /// Entity text or kind:text, case-insensitive.
    #[arg(long)]
    entity: Option<String>,
    /// Keyword, case-insensitive.
    #[arg(long)]
    keyword: Option<String>,
    /// Language code (`en`, `pt`; `und`: not known).
    #[arg(long)]
    lang: Option<String>,
}

#[derive(Debug, Args)]
pub struct MentionsArgs {
    #[command(flatten)]
    term: TermArgs,
    #[command(flatten)]
    page: PageArgs,
}

/// Exactly one of a keyword or an entity.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TermArgs {
    /// A keyword, case-insensitive.
    #[arg(long)]
    keyword: Option<String>,
    /// As kind:text, e.g. person:ada lovelace.
    #[arg(long)]
    entity: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollupsArgs {
    /// The channel, e.g. reddit/r/rust.
    #[arg(long)]
    channel: String,
    #[command(flatten)]
    range: RangeArgs,
    /// Bucket size.
    #[arg(long, default_value = "hour", value_parser = super::choice::<Granularity>(Granularity::ALL.map(Granularity::as_str)))]
    granularity: Granularity,
    /// Top terms per kind to show per bucket.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

fn cursor(token: Option<&str>) -> anyhow::Result<Option<Cursor>> {
    Ok(token.map(Cursor::decode).transpose()?)
}

/// A page of posts: a line per post and where the next page starts, or with `--json` the
/// page as one JSON line (`{"posts": [...], "next_cursor"}`, as the API answers).
fn print_page(page: PostPage, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        return output.result(
            &json!({ "posts": page.posts, "next_cursor": page.next_cursor }),
            String::new,
        );
    }
    if page.posts.is_empty() {
        console::err("no stored post in the range");
    }
    for post in &page.posts {
        console::print(post_line(post))?;
    }
    if let Some(cursor) = page.next_cursor {
        console::print(format_args!("more: --cursor {cursor}"))?;
    }
    Ok(())
}

/// One post on one line: time, id, sentiment, the start of its text.
fn post_line(post: &EnrichedPost) -> String {
    let sentiment = post.enrichment.sentiment.as_ref().map_or_else(
        || "-".to_string(),
        |s| format!("{} {:+.2}", s.label.as_str(), s.score),
    );
    format!(
        "{}  {:<28} {:<15} {}",
        post.post.created_at.format("%F %T"),
        post.post.id,
        sentiment,
        console::snippet(&post.post.text, 80)
    )
}

/// Runs a `pulse batch` subcommand.
pub async fn run(
    command: BatchCommand,
    config: PulseConfig,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let store = BatchStore::connect(&config.batch).await?;
    match command {
        BatchCommand::Recompute(args) => recompute(&store, args, output).await?,
        BatchCommand::Posts(args) => {
            let query = PostQuery {
                channel: args.channel,
                from: args.page.range.from,
                to: args.page.range.to,
                sentiment: args.sentiment,
                entity: args.entity,
                keyword: args.keyword,
                lang: args.lang,
                limit: args.page.limit,
                cursor: cursor(args.page.cursor.as_deref())?,
            };
            print_page(store.posts(&query).await?, output)?;
        }
        BatchCommand::Post { id } => match store.post(&id).await? {
            Some(post) => output.result(&post, || describe_post(&post))?,
            None => anyhow::bail!("no stored post has id {id:?}"),
        },
        BatchCommand::Mentions(args) => {
            let (kind, term) = match (args.term.keyword, args.term.entity) {
                (Some(keyword), _) => (TermKind::Keyword, keyword),
                (None, Some(entity)) => (TermKind::Entity, entity),
                (None, None) => anyhow::bail!("give --keyword or --entity"),
            };
            let query = MentionQuery {
                kind,
                term,
                from: args.page.range.from,
                to: args.page.range.to,
                limit: args.page.limit,
                cursor: cursor(args.page.cursor.as_deref())?,
            };
            print_page(store.mentioning(&query).await?, output)?;
        }
        BatchCommand::Rollups(args) => rollups(&store, args, output).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A stored post as a person reads it: the post, then what enrichment found.
fn describe_post(post: &EnrichedPost) -> String {
    let enrichment = &post.enrichment;
    let terms = |terms: Vec<String>| {
        if terms.is_empty() {
            "-".to_string()
        } else {
            terms.join(", ")
        }
    };
    let emotions: Vec<String> = enrichment
        .emotions
        .iter()
        .filter(|(_, p)| **p >= 0.1)
        .map(|(label, p)| format!("{label} {p:.2}"))
        .collect();
    [
        format!(
            "{}  {}  {}",
            post.post.id,
            post.post.channel,
            post.post.created_at.to_rfc3339()
        ),
        format!("author    {}", post.post.author.as_deref().unwrap_or("-")),
        format!("text      {}", post.post.text),
        format!(
            "sentiment {}",
            enrichment.sentiment.as_ref().map_or("-".to_string(), |s| {
                format!("{} {:+.3}", s.label.as_str(), s.score)
            })
        ),
        format!("emotions  {}", terms(emotions)),
        format!(
            "entities  {}",
            terms(
                enrichment
                    .entities
                    .iter()
                    .map(|e| format!("{} ({})", e.text, e.kind.as_str()))
                    .collect()
            )
        ),
        format!(
            "keywords  {}",
            terms(enrichment.keywords.iter().map(|k| k.term.clone()).collect())
        ),
        format!("model     {}", post.model),
    ]
    .join("\n")
}

async fn recompute(store: &BatchStore, args: RecomputeArgs, output: Output) -> anyhow::Result<()> {
    let to = args
        .to
        .unwrap_or_else(|| pulse_batch::settled_end(Utc::now()));
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} channel-days {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let progress = |step: pulse_batch::RecomputeProgress| {
        bar.set_length(step.days_total as u64);
        bar.set_position(step.days_done as u64);
        let rate = step.posts as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!("{} posts ({rate:.0}/s)", step.posts));
    };
    let report = store.recompute(args.from, to, &progress).await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let time = |t: Option<DateTime<Utc>>| t.map_or("none".to_string(), |t| t.to_rfc3339());
    output.result(&report, || {
        format!(
            "recomputed {} channel-days ({} hours, {} posts) from {} to {} in {seconds:.1} s \
             ({:.0} posts/s); watermark {} -> {}",
            report.channel_days,
            report.hours,
            report.posts,
            report.from.to_rfc3339(),
            report.to.to_rfc3339(),
            report.posts as f64 / seconds.max(0.001),
            time(report.watermark_before),
            time(report.watermark),
        )
    })
}

/// A channel's rollups: a table row per bucket, or a JSON line per bucket with `--json`.
async fn rollups(store: &BatchStore, args: RollupsArgs, output: Output) -> anyhow::Result<()> {
    let granularity = args.granularity;
    let rollups = store
        .rollups(&args.channel, granularity, args.range.from, args.range.to)
        .await?;
    let mut header_printed = false;
    for rollup in rollups {
        let mut keywords = store
            .top_terms(&args.channel, granularity, rollup.bucket, TermKind::Keyword)
            .await?;
        keywords.truncate(args.top);
        let mut entities = store
            .top_terms(&args.channel, granularity, rollup.bucket, TermKind::Entity)
            .await?;
        entities.truncate(args.top);
        let tally = &rollup.tally;
        let bucket = json!({
            "bucket": rollup.bucket.to_rfc3339(),
            "granularity": granularity.as_str(),
            "posts": tally.posts,
            "sentiment": {
                "negative": tally.negative,
                "neutral": tally.neutral,
                "positive": tally.positive,
            },
            "mean_score": tally.mean_score(),
            "emotion_means": tally.emotion_means(),
            "keywords": keywords,
            "entities": entities,
            "computed_at": rollup.computed_at.to_rfc3339(),
        });
        if output == Output::Text && !header_printed {
            header_printed = true;
            console::print(format_args!(
                "{:<17} {:>7} {:>6} {:>6} {:>6} {:>7}  top keywords",
                "bucket", "posts", "neg", "neu", "pos", "mean"
            ))?;
        }
        output.result(&bucket, || {
            let mean = tally
                .mean_score()
                .map_or("-".to_string(), |m| format!("{m:+.3}"));
            let top: Vec<&str> = keywords.iter().take(5).map(|k| k.term.as_str()).collect();
            format!(
                "{:<17} {:>7} {:>6} {:>6} {:>6} {:>7}  {}",
                rollup.bucket.format("%F %H:%M"),
                tally.posts,
                tally.negative,
                tally.neutral,
                tally.positive,
                mean,
                top.join(", ")
            )
        })?;
    }
    if output == Output::Text && !header_printed {
        console::err("no rollup in the range (run `pulse batch recompute` first?)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: BatchCommand,
    }

    #[test]
    fn mentions_take_one_term_and_a_page() {
        use clap::Parser;
        let parsed =
            Cli::try_parse_from(["batch", "mentions", "--keyword", "rust", "--from", "now-1h"]);
        assert!(
            matches!(
                parsed,
                Ok(Cli {
                    command: BatchCommand::Mentions(_)
                })
            ),
            "{parsed:?}"
        );
        for bad in [
            &[
                "batch",
                "mentions",
                "--keyword",
                "a",
                "--entity",
                "person:b",
                "--from",
                "now-1h",
            ][..],
            &["batch", "mentions", "--from", "now-1h"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
