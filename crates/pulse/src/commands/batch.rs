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
use pulse_core::{Granularity, PulseConfig, SentimentLabel};
use serde_json::json;

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
    #[arg(long, value_parser = parse_time)]
    from: DateTime<Utc>,
    #[arg(long, value_parser = parse_time, default_value = "now")]
    to: DateTime<Utc>,
}

/// A page of posts in a range.
#[derive(Debug, Args)]
pub struct PageArgs {
    #[command(flatten)]
    range: RangeArgs,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// The next_cursor of the previous page.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Debug, Args)]
pub struct PostsArgs {
    #[arg(long)]
    channel: String,
    #[command(flatten)]
    page: PageArgs,
    /// Only posts of this sentiment: negative, neutral or positive.
    #[arg(long, value_parser = |s: &str| s.parse::<SentimentLabel>())]
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
    #[arg(long)]
    keyword: Option<String>,
    /// As kind:text, e.g. person:ada lovelace.
    #[arg(long)]
    entity: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollupsArgs {
    #[arg(long)]
    channel: String,
    #[command(flatten)]
    range: RangeArgs,
    /// Bucket size: hour or day.
    #[arg(long, default_value = "hour")]
    granularity: Granularity,
    /// Top terms per kind to show per bucket.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

fn cursor(token: Option<&str>) -> anyhow::Result<Option<Cursor>> {
    Ok(token.map(Cursor::decode).transpose()?)
}

fn print_page(page: PostPage) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "posts": page.posts,
            "next_cursor": page.next_cursor,
        }))?
    );
    Ok(())
}

/// Runs a `pulse batch` subcommand.
pub async fn run(command: BatchCommand, config: PulseConfig) -> anyhow::Result<ExitCode> {
    let store = BatchStore::connect(&config.batch).await?;
    match command {
        BatchCommand::Recompute(args) => recompute(&store, args).await?,
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
            print_page(store.posts(&query).await?)?;
        }
        BatchCommand::Post { id } => match store.post(&id).await? {
            Some(post) => println!("{}", serde_json::to_string_pretty(&post)?),
            None => {
                eprintln!("error: no stored post has id {id:?}");
                return Ok(ExitCode::FAILURE);
            }
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
            print_page(store.mentioning(&query).await?)?;
        }
        BatchCommand::Rollups(args) => rollups(&store, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn recompute(store: &BatchStore, args: RecomputeArgs) -> anyhow::Result<()> {
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
    println!(
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
    );
    Ok(())
}

async fn rollups(store: &BatchStore, args: RollupsArgs) -> anyhow::Result<()> {
    let granularity = args.granularity;
    let rollups = store
        .rollups(&args.channel, granularity, args.range.from, args.range.to)
        .await?;
    for rollup in rollups {
        let mut keywords = store
            .top_terms(&args.channel, granularity, rollup.bucket, TermKind::Keyword)
            .await?;
        keywords.truncate(args.top);
        let mut entities = store
            .top_terms(&args.channel, granularity, rollup.bucket, TermKind::Entity)
            .await?;
        entities.truncate(args.top);
        println!(
            "{}",
            json!({
                "bucket": rollup.bucket.to_rfc3339(),
                "granularity": granularity.as_str(),
                "posts": rollup.tally.posts,
                "sentiment": {
                    "negative": rollup.tally.negative,
                    "neutral": rollup.tally.neutral,
                    "positive": rollup.tally.positive,
                },
                "mean_score": rollup.tally.mean_score(),
                "emotion_means": rollup.tally.emotion_means(),
                "keywords": keywords,
                "entities": entities,
                "computed_at": rollup.computed_at.to_rfc3339(),
            })
        );
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
