//! The loader's Hugging Face path: one-task exports described only by their config.json
//! (id2label, one `logits` output), on the two tiny models scripts/make_test_models.py
//! generates: a RoBERTa-style sentiment classifier (byte-level BPE, no segment ids) and a
//! BERT-style token classifier (WordPiece, CoNLL labels).

use std::path::PathBuf;

use pulse_core::config::EnrichConfig;
use pulse_core::{EntityKind, SentimentLabel};
use pulse_nlp::{Enricher, Manifest, Model, ModelOptions, Task};

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/models")
        .join(name)
}

fn spans(entities: &[pulse_core::Entity]) -> Vec<(&str, EntityKind, usize, usize)> {
    entities
        .iter()
        .map(|e| (e.text.as_str(), e.kind, e.start, e.end))
        .collect()
}

#[test]
fn manifests_are_derived_from_config_json() {
    let sentiment = Manifest::load(&model_dir("tiny-roberta-sentiment")).unwrap();
    assert_eq!(sentiment.id(), "tiny-roberta-sentiment@hf");
    assert_eq!(sentiment.tasks.len(), 1);
    assert_eq!(sentiment.tasks[0].task, Task::Sentiment);
    assert_eq!(
        sentiment.tasks[0].labels,
        ["negative", "neutral", "positive"]
    );
    assert_eq!(
        sentiment.inputs.token_type_ids, None,
        "roberta takes no segment ids"
    );

    let ner = Manifest::load(&model_dir("tiny-bert-ner")).unwrap();
    assert_eq!(ner.tasks[0].task, Task::Entities);
    assert_eq!(
        ner.tasks[0].labels,
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    );
    assert_eq!(ner.inputs.token_type_ids.as_deref(), Some("token_type_ids"));
}

#[test]
fn a_sentiment_export_labels_texts_and_scores_them() {
    let model = Model::load(
        &model_dir("tiny-roberta-sentiment"),
        &ModelOptions::default(),
    )
    .unwrap();
    assert_eq!(model.tasks(), [Task::Sentiment]);
    let texts = [
        "i love the cake",
        "i hate the rain",
        "the movie is here",
        "what a great game today",
        "the coffee is awful",
    ];
    let predictions: Vec<_> = texts
        .iter()
        .map(|text| model.predict(0, text, &[Task::Sentiment]).unwrap())
        .collect();
    let labels: Vec<SentimentLabel> = predictions
        .iter()
        .map(|p| p.sentiment.as_ref().unwrap().label)
        .collect();
    assert_eq!(
        labels,
        [
            SentimentLabel::Positive,
            SentimentLabel::Negative,
            SentimentLabel::Neutral,
            SentimentLabel::Positive,
            SentimentLabel::Negative,
        ]
    );
    for prediction in &predictions {
        let sentiment = prediction.sentiment.as_ref().unwrap();
        let p = &sentiment.probs;
        assert!((p.values().sum::<f32>() - 1.0).abs() < 1e-4, "{p:?}");
        let expected = p[&SentimentLabel::Positive] - p[&SentimentLabel::Negative];
        assert!((sentiment.score - expected).abs() < 1e-6);
        assert!(prediction.emotions.is_none() && prediction.entities.is_none());
    }
}

#[test]
fn a_token_export_gives_word_aligned_character_spans() {
    let model = Model::load(&model_dir("tiny-bert-ner"), &ModelOptions::default()).unwrap();
    let texts = [
        "alice smith went to new york yesterday",
        // Capitals, an emoji before the span (4 bytes, 1 character) and an accent after.
        "😀 Bob Jones went to Paris yesterday é",
        "yesterday san francisco welcomed carol garcia",
    ];
    let predictions: Vec<_> = texts
        .iter()
        .map(|text| model.predict(0, text, &[Task::Entities]).unwrap())
        .collect();
    let found: Vec<_> = predictions
        .iter()
        .map(|p| spans(p.entities.as_ref().unwrap()))
        .collect();
    assert_eq!(
        found,
        [
            vec![
                ("alice smith", EntityKind::Person, 0, 11),
                ("new york", EntityKind::Location, 20, 28),
            ],
            vec![
                ("Bob Jones", EntityKind::Person, 2, 11),
                ("Paris", EntityKind::Location, 20, 25),
            ],
            vec![
                ("san francisco", EntityKind::Location, 10, 23),
                ("carol garcia", EntityKind::Person, 33, 45),
            ],
        ]
    );
    for (text, prediction) in texts.iter().zip(&predictions) {
        for entity in prediction.entities.as_ref().unwrap() {
            let by_chars: String = text
                .chars()
                .skip(entity.start)
                .take(entity.end - entity.start)
                .collect();
            assert_eq!(by_chars, entity.text);
            assert!(entity.score > 0.0 && entity.score <= 1.0);
        }
    }
}

#[test]
fn an_enricher_takes_each_task_from_the_first_model_that_answers_it() {
    let config = EnrichConfig::default();
    let enricher = Enricher::with_models(
        &config,
        &[
            model_dir("tiny-roberta-sentiment"),
            model_dir("tiny-bert-ner"),
        ],
    )
    .unwrap();
    assert_eq!(
        enricher.model_name(),
        "tiny-roberta-sentiment@hf+tiny-bert-ner@hf"
    );
    let enrichments = enricher
        .enrich(&["i love the cake", "dave miller went to tokyo yesterday"])
        .unwrap();
    assert_eq!(
        enrichments[0].sentiment.as_ref().unwrap().label,
        SentimentLabel::Positive
    );
    assert!(
        enrichments[0].emotions.is_empty(),
        "no model answers emotions"
    );
    assert_eq!(
        spans(&enrichments[1].entities),
        [
            ("dave miller", EntityKind::Person, 0, 11),
            ("tokyo", EntityKind::Location, 20, 25),
        ]
    );
    assert!(enrichments[1].sentiment.is_some());
    assert!(enrichments.iter().all(|e| !e.keywords.is_empty()));
}

#[test]
fn a_directory_without_a_description_is_refused_with_its_path() {
    let empty = std::env::temp_dir().join(format!("pulse-nlp-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let error = Model::load(&empty, &ModelOptions::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("neither manifest.json nor config.json"),
        "{error}"
    );
    assert!(error.to_string().contains(&empty.display().to_string()));
    std::fs::remove_dir_all(&empty).unwrap();
}
