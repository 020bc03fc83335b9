//! Enrichment benchmark on realistic posts. One run prints, over the same posts:
//! - the previous graph through the previous path (batches of 32 by length on one session
//!   with 2 intra-op threads), bare encoder pass only: the baseline of earlier releases;
//! - each graph's full enrichment as Pulse runs it now (language, tokenize, one post per run
//!   on one session per core, decode sentiment/emotions/entities, YAKE keywords);
//! - each graph's bare encoder pass through the same sessions (tokenized beforehand);
//!
//! and the process's peak memory. `scripts/bench-enrich` adds a plain Python baseline.
//!
//! Run: `scripts/bench-enrich` (or `cargo run --release -p pulse-nlp --example enrich_bench`).
//! `PULSE_BENCH_STREAM` names the folder of one-post-per-line files (default
//! `../shared/data/stream`), `PULSE_BENCH_POSTS` the number of posts (default 10,000),
//! `PULSE_BENCH_MODEL` the model directory (default the shipped one), `PULSE_BENCH_OLD_MODEL`
//! the previous model to compare with (none: only the new one).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use pulse_core::config::EnrichConfig;
use pulse_nlp::enricher::model_options;
use pulse_nlp::{Enricher, Model};
use tokenizers::Encoding;

/// Posts per `enrich` call, as the enrich stage hands them over.
const CALL: usize = 256;
const ROUNDS: usize = 3;

fn posts(folder: &Path, wanted: usize) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot list {}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut posts = Vec::with_capacity(wanted);
    for file in files {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        posts.extend(
            text.lines()
                .filter(|line| !line.trim().is_empty())
                .map(str::to_owned),
        );
        if posts.len() >= wanted {
            break;
        }
    }
    posts.truncate(wanted);
    if posts.len() < wanted {
        bail!(
            "{} holds {} posts, {wanted} wanted",
            folder.display(),
            posts.len()
        );
    }
    Ok(posts)
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The previous release's path: batches of at most 32 posts and 2,048 padded tokens, formed
/// by length, on one session with 2 intra-op threads. Returns seconds.
fn batched_bare_pass(graph: &Path, encodings: &[Encoding]) -> anyhow::Result<f64> {
    let environment = pulse_nlp::runtime::environment(None)?;
    let build = || -> ort::Result<Session> {
        Session::builder(environment)?
            .with_optimization_level(GraphOptimizationLevel::All)?
            .with_intra_threads(2)?
            .commit_from_file(graph)
    };
    let mut session = build().map_err(|e| anyhow::anyhow!("{}: {e}", graph.display()))?;
    let takes_types = session
        .inputs()
        .iter()
        .any(|i| i.name() == "token_type_ids");
    let mut order: Vec<usize> = (0..encodings.len()).collect();
    let start = Instant::now();
    for call in order.chunks_mut(CALL) {
        call.sort_by_key(|&i| encodings[i].len());
        let mut batches: Vec<&[usize]> = Vec::new();
        let mut from = 0;
        for end in 1..=call.len() {
            let width = encodings[call[end - 1]].len();
            if end - from > 32 || (end - from) * width > 2_048.max(width) {
                batches.push(&call[from..end - 1]);
                from = end - 1;
            }
        }
        batches.push(&call[from..]);
        for batch in batches.into_iter().filter(|b| !b.is_empty()) {
            let width = batch.iter().map(|&i| encodings[i].len()).max().unwrap_or(0);
            let mut ids = vec![0i64; batch.len() * width];
            let mut mask = vec![0i64; batch.len() * width];
            for (row, &i) in batch.iter().enumerate() {
                for (t, (&id, &m)) in encodings[i]
                    .get_ids()
                    .iter()
                    .zip(encodings[i].get_attention_mask())
                    .enumerate()
                {
                    ids[row * width + t] = i64::from(id);
                    mask[row * width + t] = i64::from(m);
                }
            }
            let shape = vec![batch.len() as i64, width as i64];
            let tensor = |values: Vec<i64>| -> anyhow::Result<SessionInputValue<'static>> {
                Ok(SessionInputValue::from(Tensor::from_array((
                    shape.clone(),
                    values,
                ))?))
            };
            let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
                ("input_ids".into(), tensor(ids)?),
                ("attention_mask".into(), tensor(mask)?),
            ];
            if takes_types {
                inputs.push((
                    "token_type_ids".into(),
                    tensor(vec![0i64; batch.len() * width])?,
                ));
            }
            session.run(inputs)?;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Every encoding through the model's sessions, one post per run, one worker per session
/// (as the enricher runs them). Returns seconds.
fn bare_pass(model: &Model, texts: &[&str], encodings: &[Encoding]) -> anyhow::Result<f64> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..model.sessions())
            .map(|worker| {
                let next = &next;
                scope.spawn(move || -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(encoding) = encodings.get(i) else {
                            return Ok(());
                        };
                        if Model::readable(encoding) {
                            model.run(worker, texts[i], encoding)?;
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
    })?;
    Ok(start.elapsed().as_secs_f64())
}

fn full_pass(enricher: &Enricher, texts: &[&str]) -> anyhow::Result<f64> {
    let start = Instant::now();
    for call in texts.chunks(CALL) {
        enricher.enrich(call)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// One graph loaded for both passes.
struct Graph {
    label: &'static str,
    dir: PathBuf,
    enricher: Enricher,
    model: Model,
    encodings: Vec<Encoding>,
    bare: f64,
    full: f64,
}

impl Graph {
    fn load(label: &'static str, dir: PathBuf, texts: &[&str]) -> anyhow::Result<Graph> {
        let config = EnrichConfig::default();
        let enricher = Enricher::with_models(&config, std::slice::from_ref(&dir))?;
        let model = Model::load(&dir, &model_options(&config))?;
        let encodings = texts
            .iter()
            .map(|t| model.encode(t))
            .collect::<Result<Vec<_>, _>>()?;
        // Warm-up: ONNX Runtime allocates its arenas on the first runs.
        enricher.enrich(&texts[..CALL.min(texts.len())])?;
        Ok(Graph {
            label,
            dir,
            enricher,
            model,
            encodings,
            bare: f64::INFINITY,
            full: f64::INFINITY,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stream = std::env::var("PULSE_BENCH_STREAM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("../shared/data/stream"));
    let wanted: usize = match std::env::var("PULSE_BENCH_POSTS") {
        Ok(n) => n.parse().context("PULSE_BENCH_POSTS is not a number")?,
        Err(_) => 10_000,
    };
    let new_dir = std::env::var("PULSE_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(pulse_core::config::DEFAULT_MODEL));
    let old_dir = std::env::var("PULSE_BENCH_OLD_MODEL")
        .ok()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);

    let stream = std::fs::canonicalize(&stream).unwrap_or(stream);
    let posts = posts(&stream, wanted)?;
    let texts: Vec<&str> = posts.iter().map(String::as_str).collect();
    let mut graphs = Vec::new();
    if let Some(dir) = old_dir {
        graphs.push(Graph::load("old graph", dir, &texts)?);
    }
    graphs.push(Graph::load("new graph", new_dir, &texts)?);

    let new = graphs.last().context("no graph")?;
    let tokens: usize = new.encodings.iter().map(Encoding::len).sum();
    println!(
        "enrichment benchmark: {} posts from {} ({:.1} tokens a post), {} threads available, \
         {} sessions of 1 intra-op thread each",
        texts.len(),
        stream.display(),
        tokens as f64 / texts.len() as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        new.model.sessions(),
    );
    for graph in &graphs {
        println!(
            "{}: {} ({})",
            graph.label,
            graph.enricher.model_name(),
            graph.dir.display()
        );
    }

    // Rounds alternate so that a noisy neighbour hurts every figure alike; best of each.
    let mut batched = f64::INFINITY;
    for round in 1..=ROUNDS {
        let mut line = format!("round {round}:");
        if let Some(old) = graphs.iter().find(|g| g.label == "old graph") {
            let b = batched_bare_pass(&old.dir.join("model.onnx"), &old.encodings)?;
            line += &format!(" old path {:.0}", texts.len() as f64 / b);
            batched = batched.min(b);
        }
        for graph in &mut graphs {
            let b = bare_pass(&graph.model, &texts, &graph.encodings)?;
            let f = full_pass(&graph.enricher, &texts)?;
            line += &format!(
                " | {}: bare {:.0}, full {:.0}",
                graph.label,
                texts.len() as f64 / b,
                texts.len() as f64 / f
            );
            graph.bare = graph.bare.min(b);
            graph.full = graph.full.min(f);
        }
        println!("{line} posts/s");
    }
    let rate = |seconds: f64| texts.len() as f64 / seconds;
    println!();
    println!("| figure (best of {ROUNDS}) | posts/s |");
    println!("|---|---|");
    if batched.is_finite() {
        println!(
            "| old graph, previous path (batches of 32 by length, 1 session x 2 threads), bare pass (baseline) | {:.0} |",
            rate(batched)
        );
    }
    for graph in &graphs {
        println!(
            "| {}, bare encoder pass (one post per run) | {:.0} |",
            graph.label,
            rate(graph.bare)
        );
        println!(
            "| {}, full enrichment | {:.0} = {:.1}% of its bare pass |",
            graph.label,
            rate(graph.full),
            100.0 * graph.bare / graph.full
        );
    }
    if let (Some(old), Some(new)) = (
        graphs.iter().find(|g| g.label == "old graph"),
        graphs.iter().find(|g| g.label == "new graph"),
    ) {
        println!(
            "new graph / old graph, full enrichment through today's path: {:.2}x",
            old.full / new.full
        );
    }
    match peak_memory_mib() {
        Some(mib) => println!("peak memory (VmHWM): {mib:.0} MiB"),
        None => println!("peak memory: /proc/self/status unreadable"),
    }
    Ok(())
}
