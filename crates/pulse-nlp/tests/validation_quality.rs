//! The shipped model's quality on the validation splits of ../shared/data, measured through
//! the Rust path (tokenizer, batching, session, decoders) rather than the training script's
//! Python one: TweetEval sentiment macro recall, GoEmotions-Ekman macro-F1 with the
//! manifest's thresholds, WNUT-2017 exact-span entity F1. The bars are the project's targets,
//! and for the default also the figures of the model it replaced.
//!
//! The datasets are not part of the repository (licences); where they are absent the test
//! fails, unless `PULSE_SKIP_MODEL_QUALITY=1` explicitly skips it (never set in CI).
//! `PULSE_DATA` points elsewhere. `PULSE_VALIDATE_MODELS`
//! (directories, comma-separated) measures other models too, e.g. a candidate from
//! `scripts/train`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pulse_core::config::EnrichConfig;
use pulse_core::{Enrichment, SentimentLabel};
use pulse_nlp::manifest::Task;
use pulse_nlp::{Enricher, Manifest, PostText};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The validation data, or `None` when it is absent and `PULSE_SKIP_MODEL_QUALITY=1` says
/// to skip; absent without that, the test fails: the floors hold only where they are checked.
fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var("PULSE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("../shared/data"));
    if dir.join("tweeteval").is_dir() {
        return Some(dir);
    }
    let missing = format!(
        "validation data not found at {} (set PULSE_DATA to where ../shared/data is)",
        dir.display()
    );
    if std::env::var("PULSE_SKIP_MODEL_QUALITY").as_deref() == Ok("1") {
        eprintln!("{missing}: model quality NOT measured (PULSE_SKIP_MODEL_QUALITY=1)");
        return None;
    }
    panic!("{missing}; PULSE_SKIP_MODEL_QUALITY=1 skips this check (never in CI)");
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn f1(tp: usize, fp: usize, fn_: usize) -> f64 {
    if tp == 0 {
        return 0.0;
    }
    2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
}

/// Enriches texts known to be English, as a source that tags languages would send them: the
/// splits measure the model, not language detection.
fn english(enricher: &Enricher, texts: &[&str]) -> Vec<Enrichment> {
    let posts: Vec<PostText<'_>> = texts
        .iter()
        .map(|text| PostText {
            text,
            lang: Some("en"),
        })
        .collect();
    enricher
        .enrich_posts(&posts)
        .unwrap()
        .into_iter()
        .map(|enriched| enriched.enrichment)
        .collect()
}

fn shipped(dir: &str) -> (Enricher, Manifest) {
    let dir = repo_root().join(dir);
    let enricher =
        Enricher::with_models(&EnrichConfig::default(), std::slice::from_ref(&dir)).unwrap();
    (enricher, Manifest::load(&dir).unwrap())
}

fn sentiment_macro_recall(enricher: &Enricher, data: &Path) -> f64 {
    let folder = data.join("tweeteval/sentiment");
    let texts = lines(&folder.join("val_text.txt"));
    let labels: Vec<usize> = lines(&folder.join("val_labels.txt"))
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(texts.len(), labels.len());
    let refs: Vec<&str> = texts.iter().map(|t| t.trim()).collect();
    let mut hits = [0usize; 3];
    let mut totals = [0usize; 3];
    for chunk in 0..refs.len().div_ceil(256) {
        let range = chunk * 256..((chunk + 1) * 256).min(refs.len());
        let enrichments = english(enricher, &refs[range.clone()]);
        for (enrichment, &gold) in enrichments.iter().zip(&labels[range]) {
            let predicted = match enrichment.sentiment.as_ref().map(|s| s.label) {
                Some(SentimentLabel::Negative) => 0,
                Some(SentimentLabel::Neutral) | None => 1,
                Some(SentimentLabel::Positive) => 2,
            };
            totals[gold] += 1;
            hits[gold] += usize::from(predicted == gold);
        }
    }
    (0..3)
        .map(|c| hits[c] as f64 / totals[c] as f64)
        .sum::<f64>()
        / 3.0
}

fn emotion_macro_f1(enricher: &Enricher, manifest: &Manifest, data: &Path) -> f64 {
    let folder = data.join("goemotions/ekman");
    let names: Vec<String> = lines(&folder.join("labels.txt"))
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let spec = manifest
        .tasks
        .iter()
        .find(|t| t.task == Task::Emotion)
        .unwrap();
    assert_eq!(
        spec.labels, names,
        "the model's labels are GoEmotions-Ekman's"
    );
    let thresholds = spec.thresholds.clone().unwrap();
    let rows: Vec<(String, BTreeSet<usize>)> = lines(&folder.join("dev.tsv"))
        .iter()
        .map(|line| {
            let mut fields = line.split('\t');
            let text = fields.next().unwrap().to_string();
            let ids = fields
                .next()
                .unwrap()
                .split(',')
                .map(|i| i.parse().unwrap())
                .collect();
            (text, ids)
        })
        .collect();
    let mut counts = vec![(0usize, 0usize, 0usize); names.len()];
    for chunk in rows.chunks(256) {
        let texts: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
        for (enrichment, (_, gold)) in english(enricher, &texts).iter().zip(chunk) {
            let probs: Vec<f32> = names.iter().map(|n| enrichment.emotions[n]).collect();
            let mut chosen: BTreeSet<usize> = (0..names.len())
                .filter(|&i| probs[i] >= thresholds[i])
                .collect();
            if chosen.is_empty() {
                let best = (0..names.len())
                    .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
                    .unwrap();
                chosen.insert(best);
            }
            for (label, (tp, fp, fn_)) in counts.iter_mut().enumerate() {
                match (chosen.contains(&label), gold.contains(&label)) {
                    (true, true) => *tp += 1,
                    (true, false) => *fp += 1,
                    (false, true) => *fn_ += 1,
                    (false, false) => {}
                }
            }
        }
    }
    counts
        .iter()
        .map(|&(tp, fp, fn_)| f1(tp, fp, fn_))
        .sum::<f64>()
        / names.len() as f64
}

/// An entity as (first character, end character exclusive, kind).
type Span = (usize, usize, String);

/// WNUT-2017 and BTC kinds as Pulse names them (corporation and group are organizations).
fn gold_kind(kind: &str) -> &str {
    match kind {
        "corporation" | "group" | "ORG" => "organization",
        "creative-work" => "creative_work",
        "PER" => "person",
        "LOC" => "location",
        other => other,
    }
}

/// Exact-span entity F1 over a CoNLL file of tab-separated token and BIO tag; the text is
/// the tokens joined by spaces.
fn entity_f1(enricher: &Enricher, conll: &Path) -> f64 {
    let text = std::fs::read_to_string(conll).unwrap();
    // Sentences as text (tokens joined by spaces) and gold (start, end, kind) in characters.
    let mut sentences: Vec<(String, BTreeSet<Span>)> = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut sentence = String::new();
        let mut gold = BTreeSet::new();
        let mut open: Option<Span> = None;
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            let (token, tag) = line.rsplit_once('\t').unwrap();
            if !sentence.is_empty() {
                sentence.push(' ');
            }
            let start = sentence.chars().count();
            sentence.push_str(token);
            let end = sentence.chars().count();
            let (prefix, kind) = tag.split_once('-').unwrap_or(("O", ""));
            let kind = gold_kind(kind).to_string();
            match (prefix, &mut open) {
                ("I", Some(span)) if span.2 == kind => span.1 = end,
                ("B" | "I", _) => {
                    gold.extend(open.take());
                    open = Some((start, end, kind));
                }
                _ => gold.extend(open.take()),
            }
        }
        gold.extend(open);
        // BTC tags the "@" of a handle as an entity of its own, apart from the handle (604
        // of its 1,730 dev entities): Pulse never reports a span without a letter or digit.
        let chars: Vec<char> = sentence.chars().collect();
        gold.retain(|(start, end, _)| chars[*start..*end].iter().any(|c| c.is_alphanumeric()));
        sentences.push((sentence, gold));
    }
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    for chunk in sentences.chunks(256) {
        let texts: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
        for (enrichment, (_, gold)) in english(enricher, &texts).iter().zip(chunk) {
            let predicted: BTreeSet<Span> = enrichment
                .entities
                .iter()
                .map(|e| (e.start, e.end, e.kind.as_str().to_string()))
                .collect();
            tp += gold.intersection(&predicted).count();
            fp += predicted.difference(gold).count();
            fn_ += gold.difference(&predicted).count();
        }
    }
    f1(tp, fp, fn_)
}

/// The figures of one model directory, printed and checked against the targets.
fn measure(dir: &str, data: &Path) -> [f64; 4] {
    let (enricher, manifest) = shipped(dir);
    let sentiment = sentiment_macro_recall(&enricher, data);
    let emotion = emotion_macro_f1(&enricher, &manifest, data);
    let entities = entity_f1(&enricher, &data.join("wnut17/emerging.dev.conll"));
    let btc = entity_f1(&enricher, &data.join("btc/btc.dev"));
    println!(
        "{dir} through the Rust path: sentiment macro recall {sentiment:.4} (TweetEval val, \
         target 0.70), emotion macro-F1 {emotion:.4} (GoEmotions-Ekman dev, target 0.58), \
         entity F1 {entities:.4} (WNUT-2017 dev, exact span and kind, target 0.45), {btc:.4} \
         (Broad Twitter Corpus dev, target 0.50)"
    );
    assert!(
        sentiment >= 0.70,
        "{dir}: sentiment macro recall {sentiment:.4}"
    );
    assert!(emotion >= 0.58, "{dir}: emotion macro-F1 {emotion:.4}");
    assert!(entities >= 0.45, "{dir}: entity F1 {entities:.4}");
    assert!(btc >= 0.50, "{dir}: BTC entity F1 {btc:.4}");
    [sentiment, emotion, entities, btc]
}

#[test]
fn the_shipped_models_meet_the_quality_targets_on_the_validation_splits() {
    let Some(data) = data_dir() else { return };
    let default = measure(pulse_core::config::DEFAULT_MODEL, &data);
    // The default never falls below the figures issue 18 gave for the model it replaced
    // (1.0.0, run in batches; BTC by the training script's count).
    let floors = [
        ("sentiment", 0.728),
        ("emotion", 0.651),
        ("WNUT", 0.545),
        ("BTC", 0.555),
    ];
    for ((task, floor), figure) in floors.into_iter().zip(default) {
        assert!(
            figure >= floor,
            "the default's {task} figure {figure:.4} is below 1.0.0's {floor}"
        );
    }
    let [_, _, _, btc] = measure("models/pulse-minilm-l4-multitask", &data);
    // What the casing input buys: the uncased previous default (1.0.0) read 0.544 on BTC's names.
    assert!(
        btc >= 0.56,
        "the casing input's gain on BTC is gone: {btc:.4}"
    );
    let candidates = std::env::var("PULSE_VALIDATE_MODELS").unwrap_or_default();
    for dir in candidates.split(',').filter(|d| !d.is_empty()) {
        measure(dir, &data);
    }
}
