//! The enrich stage: raw post bytes in, enriched post JSON out (keyed by post id),
//! tombstones passed on as they are, every unusable record to the DLQ with its reason.

use std::sync::Arc;

use chrono::Utc;
use pulse_core::{decode_record, DeadLetterKind, EnrichedPost, Enrichment, PostLimits, RawRecord};
use pulse_nlp::{Enriched, Enricher, PostText};

use crate::catalogue::StageKind;
use crate::stage::{Outcome, SourceRecord, Stage, StageError};

/// Validates and enriches raw posts.
pub struct EnrichStage {
    enricher: Arc<Enricher>,
    limits: Arc<PostLimits>,
    output_topic: String,
}

impl EnrichStage {
    /// A stage emitting to `output_topic` (the enriched topic).
    pub fn new(enricher: Arc<Enricher>, limits: PostLimits, output_topic: String) -> Self {
        Self {
            enricher,
            limits: Arc::new(limits),
            output_topic,
        }
    }
}

impl Stage for EnrichStage {
    fn kind(&self) -> StageKind {
        StageKind::Enrich
    }

    fn output_topic(&self) -> Option<&str> {
        Some(&self.output_topic)
    }

    async fn process(&self, batch: &[SourceRecord]) -> Result<Vec<Outcome>, StageError> {
        let payloads: Vec<Option<Vec<u8>>> = batch.iter().map(|r| r.payload.clone()).collect();
        let enricher = self.enricher.clone();
        let limits = self.limits.clone();
        // Decoding, inference and keyword extraction are CPU work: off the async runtime.
        tokio::task::spawn_blocking(move || enrich_batch(&enricher, &limits, &payloads))
            .await
            .map_err(|e| StageError(format!("enrichment task failed: {e}")))?
    }
}

fn enrich_batch(
    enricher: &Enricher,
    limits: &PostLimits,
    payloads: &[Option<Vec<u8>>],
) -> Result<Vec<Outcome>, StageError> {
    let decoded: Vec<_> = payloads
        .iter()
        .map(|payload| decode_record(payload.as_deref().unwrap_or_default(), limits))
        .collect();
    let texts: Vec<PostText<'_>> = decoded
        .iter()
        .filter_map(|record| match record {
            Ok(RawRecord::Post(post)) => Some(PostText {
                text: &post.text,
                lang: post.lang.as_deref(),
            }),
            _ => None,
        })
        .collect();
    // An inference failure is not the posts' fault: the batch is retried, never
    // dead-lettered.
    let enrichments = enricher
        .enrich_posts(&texts)
        .map_err(|e| StageError(e.to_string()))?;
    if enrichments.len() != texts.len() {
        return Err(StageError(format!(
            "the enricher returned {} results for {} posts",
            enrichments.len(),
            texts.len()
        )));
    }
    let mut enrichments = enrichments.into_iter();
    let model = enricher.model_name();
    let now = Utc::now();
    let outcomes = decoded
        .into_iter()
        .map(|record| match record {
            Err(rejection) => Outcome::Reject {
                kind: rejection.kind(),
                error: rejection.to_string(),
            },
            // A deletion goes on to the sinks as it is: there is nothing to enrich.
            Ok(RawRecord::Tombstone(tombstone)) => match serde_json::to_vec(&tombstone) {
                Ok(payload) => Outcome::Emit {
                    key: tombstone.id,
                    payload,
                },
                Err(error) => Outcome::Reject {
                    kind: DeadLetterKind::Unserializable,
                    error: format!("tombstone cannot be serialized: {error}"),
                },
            },
            Ok(RawRecord::Post(mut post)) => {
                let enriched = enrichments.next().unwrap_or_else(|| Enriched {
                    enrichment: Enrichment::default(),
                    lang: pulse_nlp::language::UNDETERMINED.into(),
                });
                // The language as Pulse records it: the source's tag normalized, else
                // detected, else `und`.
                post.lang = Some(enriched.lang);
                let enrichment = enriched.enrichment;
                let key = post.id.clone();
                let enriched = EnrichedPost::new(post, enrichment, model.to_string(), now);
                match serde_json::to_vec(&enriched) {
                    Ok(payload) => Outcome::Emit { key, payload },
                    Err(error) => Outcome::Reject {
                        kind: DeadLetterKind::Unserializable,
                        error: format!("enriched post cannot be serialized: {error}"),
                    },
                }
            }
        })
        .collect();
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_core::config::EnrichConfig;

    #[test]
    fn good_posts_are_emitted_in_order_and_bad_ones_rejected() {
        let config = EnrichConfig::default();
        let enricher = Enricher::with_models(&config, &[]).unwrap();
        let good = |id: &str| {
            Some(format!(r#"{{"id":"{id}","source":"file","channel":"c","text":"Rust async runtimes compared","created_at":"2026-01-01T00:00:00Z"}}"#).into_bytes())
        };
        let tombstone = br#"{"kind":"tombstone","id":"a","source":"file","channel":"c","created_at":"2026-01-01T00:00:00Z","deleted_at":"2026-01-01T01:00:00Z","reason":"gone"}"#;
        let payloads = vec![
            good("a"),
            Some(b"{".to_vec()),
            None,
            good("b"),
            Some(tombstone.to_vec()),
        ];
        let outcomes = enrich_batch(&enricher, &config.post_limits(), &payloads).unwrap();
        assert_eq!(outcomes.len(), 5);
        let Outcome::Emit { key, payload } = &outcomes[0] else {
            panic!("{:?}", outcomes[0])
        };
        assert_eq!(key, "a");
        let enriched: EnrichedPost = serde_json::from_slice(payload).unwrap();
        assert_eq!(enriched.post.id, "a");
        assert!(!enriched.enrichment.keywords.is_empty());
        assert!(
            matches!(&outcomes[1], Outcome::Reject { kind, .. } if *kind == DeadLetterKind::NotJson)
        );
        assert!(
            matches!(&outcomes[2], Outcome::Reject { kind, .. } if *kind == DeadLetterKind::EmptyRecord)
        );
        assert!(matches!(&outcomes[3], Outcome::Emit { key, .. } if key == "b"));
        let Outcome::Emit { key, payload } = &outcomes[4] else {
            panic!("{:?}", outcomes[4])
        };
        assert_eq!(key, "a");
        let passed: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let sent: serde_json::Value = serde_json::from_slice(tombstone).unwrap();
        assert_eq!(passed, sent);
    }

    #[test]
    fn every_post_leaves_with_its_language() {
        let config = EnrichConfig::default();
        let enricher = Enricher::with_models(&config, &[]).unwrap();
        let post = |id: &str, lang: Option<&str>, text: &str| {
            let mut post = serde_json::json!({"id": id, "source": "file", "channel": "c",
                "text": text, "created_at": "2026-01-01T00:00:00Z"});
            if let Some(lang) = lang {
                post["lang"] = lang.into();
            }
            Some(serde_json::to_vec(&post).unwrap())
        };
        let spanish =
            "El nuevo lanzamiento me puso furioso, ya nada funciona después de la actualización";
        let payloads = vec![
            post(
                "tagged",
                Some("pt-BR"),
                "Obrigado a todos pela ajuda de hoje",
            ),
            post("detected", None, spanish),
            post("short", None, "ok 👍"),
            post("untagged", Some("und"), spanish),
        ];
        let langs: Vec<String> = enrich_batch(&enricher, &config.post_limits(), &payloads)
            .unwrap()
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Emit { payload, .. } => serde_json::from_slice::<EnrichedPost>(&payload)
                    .unwrap()
                    .post
                    .lang
                    .unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(langs, ["pt", "es", "und", "es"]);
    }
}
