//! The shipped model (models/pulse-minilm-multitask) through the Rust loader: what it says
//! about clear texts, entity spans on the original text whatever it contains, and input that
//! must not break it.

use std::path::PathBuf;
use std::sync::OnceLock;

use pulse_core::config::EnrichConfig;
use pulse_core::{Enrichment, EntityKind, SentimentLabel};
use pulse_nlp::Enricher;
use pulse_testkit::shipped_model;

/// One enricher for the whole test binary, as in a process.
fn enricher() -> &'static Enricher {
    static ENRICHER: OnceLock<Enricher> = OnceLock::new();
    ENRICHER.get_or_init(|| {
        Enricher::with_models(&EnrichConfig::default(), &[shipped_model()])
            .expect("the shipped model loads (scripts/setup installs ONNX Runtime)")
    })
}

fn enrich(texts: &[&str]) -> Vec<Enrichment> {
    let enrichments = enricher().enrich(texts).expect("enrichment runs");
    assert_eq!(enrichments.len(), texts.len());
    enrichments
}

fn label(enrichment: &Enrichment) -> Option<SentimentLabel> {
    enrichment.sentiment.as_ref().map(|s| s.label)
}

/// Every entity's text is exactly its character range of the original text.
fn assert_spans_are_original_text(text: &str, enrichment: &Enrichment) {
    let chars: Vec<char> = text.chars().collect();
    for entity in &enrichment.entities {
        assert!(
            entity.start < entity.end && entity.end <= chars.len(),
            "{entity:?}"
        );
        let slice: String = chars[entity.start..entity.end].iter().collect();
        assert_eq!(slice, entity.text, "in {text:?}");
        assert_eq!(entity.text.trim(), entity.text, "spans are trimmed words");
    }
}

#[test]
fn the_model_names_itself_and_reads_clear_sentiment() {
    assert_eq!(enricher().model_name(), "pulse-minilm-multitask@2.0.0");
    let texts = [
        "I absolutely love this new phone, best purchase ever!",
        "This is the worst airline, they lost my bag and were rude about it.",
        "The meeting is scheduled for 3pm on Tuesday in room 4.",
        "Thank you so much, you made my day :)",
        "I hate Mondays, everything is broken and I'm exhausted",
    ];
    let enrichments = enrich(&texts);
    let labels: Vec<_> = enrichments.iter().map(label).collect();
    use SentimentLabel::*;
    assert_eq!(
        labels,
        [
            Some(Positive),
            Some(Negative),
            Some(Neutral),
            Some(Positive),
            Some(Negative)
        ]
    );
    for enrichment in &enrichments {
        let sentiment = enrichment.sentiment.as_ref().expect("sentiment");
        let p = &sentiment.probs;
        assert!((p.values().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!((sentiment.score - (p[&Positive] - p[&Negative])).abs() < 1e-6);
        assert_eq!(enrichment.emotions.len(), 7);
        assert!(enrichment
            .emotions
            .values()
            .all(|&p| (0.0..=1.0).contains(&p)));
    }
    let joy = |e: &Enrichment| e.emotions["joy"];
    let anger = |e: &Enrichment| e.emotions["anger"];
    assert!(joy(&enrichments[3]) > 0.5, "{:?}", enrichments[3].emotions);
    assert!(joy(&enrichments[3]) > joy(&enrichments[1]));
    assert!(anger(&enrichments[1]) > anger(&enrichments[3]));
}

#[test]
fn entity_spans_are_character_ranges_of_the_original_text() {
    let cases: [(&str, &[(&str, EntityKind)]); 4] = [
        (
            "😂😂 Barack Obama just landed in Paris!",
            &[
                ("Barack Obama", EntityKind::Person),
                ("Paris", EntityKind::Location),
            ],
        ),
        (
            "Tim Cook says Apple will open a store in São Paulo https://apple.com/br #Apple",
            &[
                ("Tim Cook", EntityKind::Person),
                ("Apple", EntityKind::Organization),
            ],
        ),
        (
            "東京 はとても楽しい 🎉 Angela Merkel met Emmanuel Macron in Berlin",
            &[
                ("Angela Merkel", EntityKind::Person),
                ("Emmanuel Macron", EntityKind::Person),
                ("Berlin", EntityKind::Location),
            ],
        ),
        (
            "مرحبا بالعالم Lionel Messi signed with Inter Miami 🇺🇸⚽",
            &[("Lionel Messi", EntityKind::Person)],
        ),
    ];
    let texts: Vec<&str> = cases.iter().map(|(text, _)| *text).collect();
    for ((text, expected), enrichment) in cases.iter().zip(enrich(&texts)) {
        assert_spans_are_original_text(text, &enrichment);
        let found: Vec<(&str, EntityKind)> = enrichment
            .entities
            .iter()
            .map(|e| (e.text.as_str(), e.kind))
            .collect();
        for wanted in *expected {
            assert!(
                found.contains(wanted),
                "{wanted:?} not in {found:?} of {text:?}"
            );
        }
    }
}

#[test]
fn spans_stay_on_the_original_text_for_any_mix_of_scripts_and_symbols() {
    let texts = [
        "Ünïcödé Zürich café naïve résumé with Müller and Øresund",
        "#BlackLivesMatter @elonmusk https://t.co/abc?x=1 Elon Musk tweets about Tesla",
        "שלום Benjamin Netanyahu ירושלים and Joe Biden",
        "北京欢迎你 Xi Jinping and 習近平 at the Great Hall",
        "👩‍👩‍👧‍👦 family trip to Disneyland with Mickey Mouse 🐭",
        "e\u{301}cole Jose\u{301} Mourinho (combining accents) at Chelsea",
        "zero\u{200b}width\u{200d}joiners and Bill\u{feff}Gates",
        "\t\u{7}bell\u{1b}[31m red \u{0} null Microsoft",
        "ＦＵＬＬＷＩＤＴＨ Ｓｏｎｙ ｗｏｒｌｄ Nintendo Switch",
    ];
    for (text, enrichment) in texts.iter().zip(enrich(&texts)) {
        assert_spans_are_original_text(text, &enrichment);
    }
}

#[test]
fn bad_input_is_enriched_without_panicking() {
    let megabyte = "the quick brown fox jumps over the lazy dog and reads posts ".repeat(17_500);
    assert!(megabyte.len() > 1_000_000);
    let texts = [
        "",
        "   \t\n  ",
        megabyte.as_str(),
        "😀😂🔥🔥🔥💯",
        "\u{200b}\u{200c}\u{200d}\u{feff}",
        "\u{0}\u{1}\u{2}\u{7f}\u{9f}",
        "mixed Русский 中文 العربية हिन्दी 한국어 text about the World Cup",
        "\u{fffd}\u{fffd} replacement characters",
    ];
    let enrichments = enrich(&texts);
    assert_eq!(enrichments[0], Enrichment::default());
    assert_eq!(enrichments[1], Enrichment::default());
    assert_eq!(enrichments[4].keywords, []);
    assert_eq!(enrichments[5].keywords, []);
    // A 1 MB post is read up to the model's length and a bounded prefix for keywords.
    let long = &enrichments[2];
    assert!(long.sentiment.is_some());
    let per_post = EnrichConfig::default().keywords_per_post;
    assert!(!long.keywords.is_empty() && long.keywords.len() <= per_post);
    assert_spans_are_original_text(&megabyte, long);
    // Emoji are words to the model: they get a sentiment.
    assert!(enrichments[3].sentiment.is_some());
    assert!(enrichments[6].sentiment.is_some());
    for (text, enrichment) in texts.iter().zip(&enrichments) {
        assert_spans_are_original_text(text, enrichment);
    }
}

/// 200 different posts: short and long, upper and lower case, emoji, links, hashtags and
/// handles, with the texts users reported as changing label inside a batch.
fn two_hundred_posts() -> Vec<String> {
    let bodies = [
        "The new Rust release made me furious, half my crates stopped compiling",
        "I absolutely love this new phone, best purchase ever!",
        "Lunch at McDonald's again, Michael O'Leary was on the next table",
        "The meeting is scheduled for 3pm on Tuesday in room 4.",
        "Coca-Cola and PepsiCo both raised prices in São Paulo this week",
        "why does my e-mail keep bouncing?? 😤😤",
        "Great game by Real Madrid tonight! #HalaMadrid",
        "@user thanks for the help, you saved my weekend 🙏",
        "traffic on I-95 is a nightmare, avoid if you can https://t.co/abc123",
        "Honestly not sure how I feel about the new Apple Watch",
        "BREAKING: storm warning for the whole east coast tonight",
        "meh",
        "this is fine. everything is fine. 🔥",
        "Elon Musk says Tesla will build a factory in Berlin next year",
        "I miss my grandmother every single day",
    ];
    let frames = [
        ("", ""),
        ("RT ", ""),
        ("", " lol"),
        ("Update: ", " (more soon)"),
        ("", " #news"),
        ("omg ", " !!!"),
        ("", " 😀"),
        ("Thread 1/3: ", ""),
        ("", " https://example.com/story?id=7"),
        ("so... ", " idk"),
        (
            "",
            " and that's all I have to say about it, really, after a long day at work",
        ),
        ("NEW: ", ""),
        ("", "?"),
        ("ok ", " ok"),
    ];
    let mut posts = Vec::new();
    for (b, body) in bodies.iter().enumerate() {
        for (f, (before, after)) in frames.iter().enumerate() {
            // Every other frame upper-cases: casing is an input of the entity head.
            let text = format!("{before}{body}{after}");
            posts.push(if (b + f) % 5 == 0 {
                text.to_uppercase()
            } else {
                text
            });
        }
    }
    posts.truncate(200);
    assert_eq!(posts.len(), 200);
    posts
}

/// Fails unless `a` and `b` carry the same labels and entities and scores within 1e-4.
fn assert_same_enrichment(text: &str, a: &Enrichment, b: &Enrichment) {
    const TOLERANCE: f32 = 1e-4;
    let close = |x: f32, y: f32| (x - y).abs() <= TOLERANCE;
    match (&a.sentiment, &b.sentiment) {
        (Some(x), Some(y)) => {
            assert_eq!(x.label, y.label, "{text:?}");
            assert!(
                close(x.score, y.score),
                "{text:?}: {} vs {}",
                x.score,
                y.score
            );
            for (label, p) in &x.probs {
                assert!(close(*p, y.probs[label]), "{text:?}: {label:?}");
            }
        }
        (x, y) => assert_eq!(x.is_some(), y.is_some(), "{text:?}"),
    }
    assert_eq!(
        a.emotions.keys().collect::<Vec<_>>(),
        b.emotions.keys().collect::<Vec<_>>()
    );
    for (label, p) in &a.emotions {
        assert!(close(*p, b.emotions[label]), "{text:?}: {label}");
    }
    let spans = |e: &Enrichment| {
        e.entities
            .iter()
            .map(|x| (x.text.clone(), x.kind, x.start, x.end))
            .collect::<Vec<_>>()
    };
    assert_eq!(spans(a), spans(b), "{text:?}");
    for (x, y) in a.entities.iter().zip(&b.entities) {
        assert!(close(x.score, y.score), "{text:?}: {}", x.text);
    }
    assert_eq!(a.keywords, b.keywords, "{text:?}");
}

#[test]
fn a_post_gets_the_same_scores_whatever_its_batch() {
    assert_scores_ignore_batches(shipped_model());
}

/// The faster model takes the casing input too: the same holds through that path.
#[test]
fn a_post_gets_the_same_scores_whatever_its_batch_with_the_casing_model() {
    assert_scores_ignore_batches(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/pulse-minilm-l4-multitask"),
    );
}

fn assert_scores_ignore_batches(model: PathBuf) {
    let enricher = Enricher::with_models(&EnrichConfig::default(), std::slice::from_ref(&model))
        .expect("the model loads");
    let enrich = |texts: &[&str]| enricher.enrich(texts).expect("enrichment runs");
    let posts = two_hundred_posts();
    let alone: Vec<Enrichment> = posts.iter().map(|p| enrich(&[p]).remove(0)).collect();
    // Shuffled batches of uneven sizes (1 to 64), three times over, with a fixed seed.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3 {
        let mut order: Vec<usize> = (0..posts.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        let mut from = 0;
        while from < order.len() {
            let size = 1 + (next() % 64) as usize;
            let batch: Vec<usize> = order[from..(from + size).min(order.len())].to_vec();
            let texts: Vec<&str> = batch.iter().map(|&i| posts[i].as_str()).collect();
            for (&i, together) in batch.iter().zip(enrich(&texts)) {
                assert_same_enrichment(&posts[i], &alone[i], &together);
            }
            from += size;
        }
    }
    // One session or several: the same answers.
    let config = EnrichConfig {
        sessions: 1,
        ..EnrichConfig::default()
    };
    let single = Enricher::with_models(&config, &[model]).unwrap();
    let texts: Vec<&str> = posts.iter().map(String::as_str).collect();
    for ((text, a), b) in texts.iter().zip(&alone).zip(single.enrich(&texts).unwrap()) {
        assert_same_enrichment(text, a, &b);
    }
}
