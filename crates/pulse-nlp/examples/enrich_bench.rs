//! Enrichment benchmark on realistic posts: posts/s of the full enrichment (tokenize, model,
//! decode, keywords) next to the bare encoder pass (the same batches, tokenized beforehand,
//! through the session only) measured in the same run, and the process's peak memory.
//!
//! Run: `scripts/bench-enrich` (or `cargo run --release -p pulse-nlp --example enrich_bench`).
//! `PULSE_BENCH_STREAM` names the folder of one-post-per-line files (default
//! `../shared/data/stream`), `PULSE_BENCH_POSTS` the number of posts (default 10,000),
//! `PULSE_BENCH_MODEL` the model directory (default the shipped one).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
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

fn bare_pass(model: &Model, encodings: &[Encoding], batches: &[Vec<usize>]) -> anyhow::Result<f64> {
    let start = Instant::now();
    for batch in batches {
        let members: Vec<&Encoding> = batch.iter().map(|&i| &encodings[i]).collect();
        model.run(&members)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn full_pass(enricher: &Enricher, texts: &[&str]) -> anyhow::Result<f64> {
    let start = Instant::now();
    for call in texts.chunks(CALL) {
        enricher.enrich(call)?;
    }
    Ok(start.elapsed().as_secs_f64())
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
    let model_dir = std::env::var("PULSE_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(pulse_core::config::DEFAULT_MODEL));

    let stream = std::fs::canonicalize(&stream).unwrap_or(stream);
    let posts = posts(&stream, wanted)?;
    let texts: Vec<&str> = posts.iter().map(String::as_str).collect();
    let config = EnrichConfig::default();
    let enricher = Enricher::with_models(&config, std::slice::from_ref(&model_dir))?;
    let model = Model::load(&model_dir, &model_options(&config))?;

    // Tokenized once, batched exactly as the enricher batches each call.
    let mut encodings: Vec<Encoding> = Vec::with_capacity(texts.len());
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for call in texts.chunks(CALL) {
        let offset = encodings.len();
        let call_encodings = model.encode(call)?;
        batches.extend(
            model
                .batches(&call_encodings)
                .into_iter()
                .map(|b| b.into_iter().map(|i| i + offset).collect()),
        );
        encodings.extend(call_encodings);
    }
    let tokens: usize = encodings.iter().map(Encoding::len).sum();
    let padded_size = |batch: &[usize]| {
        batch.len() * batch.iter().map(|&i| encodings[i].len()).max().unwrap_or(0)
    };
    let padded: usize = batches.iter().map(|b| padded_size(b)).sum();
    // What batches of the same size in arrival order would pad to.
    let arrival: Vec<usize> = (0..encodings.len()).collect();
    let padded_in_order: usize = arrival
        .chunks(model_options(&config).max_batch_posts.max(1))
        .map(padded_size)
        .sum();

    println!(
        "enrichment benchmark: {} posts from {}, model {}, {} threads available",
        texts.len(),
        stream.display(),
        enricher.model_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let padding = |padded: usize| 100.0 * (padded - tokens) as f64 / padded.max(1) as f64;
    println!(
        "tokens {tokens} ({:.1} per post), padded to {padded} in {} batches by length \
         ({:.1}% padding; in arrival order {:.1}%)",
        tokens as f64 / texts.len() as f64,
        batches.len(),
        padding(padded),
        padding(padded_in_order)
    );
    // Warm-up: ONNX Runtime allocates its arenas on the first runs.
    enricher.enrich(&texts[..CALL.min(texts.len())])?;

    // Rounds alternate so that a noisy neighbour hurts both sides alike; best of each.
    let (mut bare, mut full) = (f64::INFINITY, f64::INFINITY);
    for round in 1..=ROUNDS {
        let b = bare_pass(&model, &encodings, &batches)?;
        let f = full_pass(&enricher, &texts)?;
        println!(
            "round {round}: bare encoder pass {:>7.1} posts/s   full enrichment {:>7.1} posts/s",
            texts.len() as f64 / b,
            texts.len() as f64 / f
        );
        bare = bare.min(b);
        full = full.min(f);
    }
    let (bare_rate, full_rate) = (texts.len() as f64 / bare, texts.len() as f64 / full);
    println!("best  : bare encoder pass {bare_rate:>7.1} posts/s (baseline)");
    println!(
        "best  : full enrichment   {full_rate:>7.1} posts/s = {:.1}% of the bare pass (target >= 80%)",
        100.0 * full_rate / bare_rate
    );
    match peak_memory_mib() {
        Some(mib) => println!("peak memory (VmHWM): {mib:.0} MiB"),
        None => println!("peak memory: /proc/self/status unreadable"),
    }
    Ok(())
}
