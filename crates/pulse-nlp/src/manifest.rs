//! What a model directory holds and which tasks it answers: Pulse's own `manifest.json`, or
//! the `config.json` of a standard Hugging Face export of one task.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::NlpError;

/// The enrichment a model output feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Sentiment,
    Emotion,
    Entities,
}

/// How an output tensor is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// `[batch, labels]` logits, one label per text (softmax).
    SingleLabel,
    /// `[batch, labels]` logits, independent labels (sigmoid).
    MultiLabel,
    /// `[batch, tokens, tags]` logits over BIO tags (`O`, `B-kind`, `I-kind`).
    TokenBio,
}

/// One task of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub task: Task,
    /// Name of the output tensor.
    pub output: String,
    pub kind: OutputKind,
    /// Label (or tag) of each output index.
    pub labels: Vec<String>,
    /// Per-label decision thresholds of a multi-label task (reported, not applied: the
    /// enrichment carries probabilities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<f32>>,
}

/// Names of the graph's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputNames {
    pub input_ids: String,
    pub attention_mask: String,
    /// Absent for models without segment ids (RoBERTa and friends).
    #[serde(default)]
    pub token_type_ids: Option<String>,
    /// The casing class of each piece ([`crate::casing`]), for models trained with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_ids: Option<String>,
}

/// `manifest.json` of a model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// Longest input in tokens (special tokens included); longer texts are truncated.
    pub max_tokens: usize,
    pub inputs: InputNames,
    /// Languages the model reads ([`crate::language`] codes), `*` for any. Posts in other
    /// languages get keywords and their language, never this model's scores. Absent: `en`,
    /// since most exports are English and a wrong "any" would label other languages.
    #[serde(default = "english")]
    pub languages: Vec<String>,
    pub tasks: Vec<TaskSpec>,
}

fn english() -> Vec<String> {
    vec!["en".to_string()]
}

/// The parts of a Hugging Face `config.json` that say what an export of one task does.
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    id2label: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    problem_type: Option<String>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    max_position_embeddings: Option<usize>,
    #[serde(default, rename = "_name_or_path")]
    name_or_path: Option<String>,
}

impl Manifest {
    /// Whether this model scores posts in language `lang`. A post whose language is not
    /// known (`und`) is scored: most are short posts detection cannot tell apart.
    pub fn reads(&self, lang: &str) -> bool {
        lang == crate::language::UNDETERMINED
            || self.languages.iter().any(|l| l == "*" || l == lang)
    }

    /// Reads `manifest.json` from `dir`, or derives the manifest from `config.json` (a
    /// Hugging Face export with one `logits` output).
    pub fn load(dir: &Path) -> Result<Self, NlpError> {
        let manifest = dir.join("manifest.json");
        if manifest.exists() {
            let text = read(&manifest)?;
            let parsed: Manifest = serde_json::from_str(&text).map_err(|e| {
                NlpError::Model(format!("{}: not a model manifest: {e}", manifest.display()))
            })?;
            parsed.check(&manifest)?;
            return Ok(parsed);
        }
        let config = dir.join("config.json");
        if config.exists() {
            return Self::from_hf_config(dir, &read(&config)?);
        }
        Err(NlpError::Model(format!(
            "{}: neither manifest.json nor config.json found",
            dir.display()
        )))
    }

    fn from_hf_config(dir: &Path, text: &str) -> Result<Self, NlpError> {
        let path = dir.join("config.json");
        let config: HfConfig = serde_json::from_str(text)
            .map_err(|e| NlpError::Model(format!("{}: {e}", path.display())))?;
        let mut labels = Vec::with_capacity(config.id2label.len());
        for index in 0..config.id2label.len() {
            let label = config.id2label.get(&index.to_string()).ok_or_else(|| {
                NlpError::Model(format!(
                    "{}: id2label has no entry {index} (ids must be 0..n)",
                    path.display()
                ))
            })?;
            labels.push(label.clone());
        }
        let token_level = config
            .architectures
            .iter()
            .any(|a| a.ends_with("ForTokenClassification"));
        let sequence_level = config
            .architectures
            .iter()
            .any(|a| a.ends_with("ForSequenceClassification"));
        let (task, kind) = if token_level {
            (Task::Entities, OutputKind::TokenBio)
        } else if sequence_level {
            let multi = config.problem_type.as_deref() == Some("multi_label_classification");
            let kind = if multi {
                OutputKind::MultiLabel
            } else {
                OutputKind::SingleLabel
            };
            // A single-label model whose labels are the three sentiments is a sentiment
            // model; any other classifier is read as emotions.
            if !multi && crate::decode::sentiment_order(&labels).is_some() {
                (Task::Sentiment, kind)
            } else {
                (Task::Emotion, kind)
            }
        } else {
            return Err(NlpError::Model(format!(
                "{}: architectures {:?} name neither a sequence nor a token classifier; \
                 write a manifest.json for this model",
                path.display(),
                config.architectures
            )));
        };
        // RoBERTa-family exports take no segment ids, and their position ids start after
        // the padding index, so two positions are never used.
        let roberta = matches!(
            config.model_type.as_deref(),
            Some("roberta" | "xlm-roberta" | "camembert")
        );
        let segments = !roberta
            && !matches!(
                config.model_type.as_deref(),
                Some("distilbert" | "bart" | "deberta-v2")
            );
        let positions = config.max_position_embeddings.unwrap_or(512);
        let name = config
            .name_or_path
            .filter(|n| !n.is_empty())
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        let manifest = Manifest {
            name,
            version: "hf".into(),
            max_tokens: positions
                .saturating_sub(if roberta { 2 } else { 0 })
                .clamp(8, 512),
            inputs: InputNames {
                input_ids: "input_ids".into(),
                attention_mask: "attention_mask".into(),
                token_type_ids: segments.then(|| "token_type_ids".into()),
                case_ids: None,
            },
            languages: english(),
            tasks: vec![TaskSpec {
                task,
                output: "logits".into(),
                kind,
                labels,
                thresholds: None,
            }],
        };
        manifest.check(&path)?;
        Ok(manifest)
    }

    /// Refuses manifests the decoders could not honour.
    fn check(&self, path: &Path) -> Result<(), NlpError> {
        let fail = |why: String| Err(NlpError::Model(format!("{}: {why}", path.display())));
        if self.tasks.is_empty() {
            return fail("no tasks".into());
        }
        if self.max_tokens < 3 {
            return fail(format!("max_tokens {} is too small", self.max_tokens));
        }
        if self.languages.is_empty() {
            return fail("languages is empty (name them, or [\"*\"] for any)".into());
        }
        if let Some(bad) = self
            .languages
            .iter()
            .find(|l| *l != "*" && crate::language::normalize(l).as_deref() != Some(l.as_str()))
        {
            return fail(format!(
                "language {bad:?} is not an ISO 639-1 code (or 639-3 for languages without one)"
            ));
        }
        for spec in &self.tasks {
            if spec.labels.is_empty() {
                return fail(format!("task {:?} has no labels", spec.task));
            }
            if (spec.task == Task::Entities) != (spec.kind == OutputKind::TokenBio) {
                return fail(format!(
                    "task {:?} cannot be {:?}: entities are token_bio, other tasks are not",
                    spec.task, spec.kind
                ));
            }
            if spec.task == Task::Sentiment {
                if spec.kind != OutputKind::SingleLabel {
                    return fail("sentiment must be single_label".into());
                }
                if crate::decode::sentiment_order(&spec.labels).is_none() {
                    return fail(format!(
                        "sentiment labels {:?} are not negative/neutral/positive (write a \
                         manifest.json naming them)",
                        spec.labels
                    ));
                }
            }
            if let Some(thresholds) = &spec.thresholds {
                if thresholds.len() != spec.labels.len() {
                    return fail(format!(
                        "{} thresholds for {} labels",
                        thresholds.len(),
                        spec.labels.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// `name@version`, as recorded on enriched posts.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

fn read(path: &Path) -> Result<String, NlpError> {
    std::fs::read_to_string(path)
        .map_err(|e| NlpError::Model(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive(config: &str) -> Result<Manifest, NlpError> {
        Manifest::from_hf_config(Path::new("models/x"), config)
    }

    #[test]
    fn hugging_face_configs_name_their_task() {
        let sentiment = derive(
            r#"{"architectures":["RobertaForSequenceClassification"],"model_type":"roberta",
                "id2label":{"0":"negative","1":"neutral","2":"positive"},
                "max_position_embeddings":514}"#,
        )
        .unwrap();
        assert_eq!(sentiment.tasks[0].task, Task::Sentiment);
        assert_eq!(sentiment.inputs.token_type_ids, None);
        assert_eq!(sentiment.max_tokens, 512);

        let emotion = derive(
            r#"{"architectures":["BertForSequenceClassification"],"model_type":"bert",
                "problem_type":"multi_label_classification",
                "id2label":{"0":"joy","1":"anger"}}"#,
        )
        .unwrap();
        assert_eq!(emotion.tasks[0].task, Task::Emotion);
        assert_eq!(emotion.tasks[0].kind, OutputKind::MultiLabel);
        assert_eq!(
            emotion.inputs.token_type_ids.as_deref(),
            Some("token_type_ids")
        );
        assert_eq!(emotion.max_tokens, 512);

        let entities = derive(
            r#"{"architectures":["BertForTokenClassification"],
                "id2label":{"0":"O","1":"B-PER","2":"I-PER"}}"#,
        )
        .unwrap();
        assert_eq!(entities.tasks[0].task, Task::Entities);
        assert_eq!(entities.tasks[0].labels, ["O", "B-PER", "I-PER"]);
    }

    #[test]
    fn unusable_configs_say_why() {
        let holes = derive(
            r#"{"architectures":["BertForSequenceClassification"],"id2label":{"0":"a","2":"b"}}"#,
        )
        .unwrap_err();
        assert!(holes.to_string().contains("no entry 1"), "{holes}");
        let encoder = derive(r#"{"architectures":["BertModel"]}"#).unwrap_err();
        assert!(encoder.to_string().contains("manifest.json"), "{encoder}");
        let multi_sentiment: Result<Manifest, _> = serde_json::from_str::<Manifest>(
            r#"{"name":"m","version":"1","max_tokens":128,
                "inputs":{"input_ids":"i","attention_mask":"m"},
                "tasks":[{"task":"sentiment","output":"o","kind":"multi_label",
                          "labels":["negative","neutral","positive"]}]}"#,
        )
        .map_err(|e| NlpError::Model(e.to_string()))
        .and_then(|m| m.check(Path::new("manifest.json")).map(|()| m));
        assert!(multi_sentiment.is_err());
    }

    fn with_languages(languages: &str) -> Result<Manifest, NlpError> {
        let text = format!(
            r#"{{"name":"m","version":"1","max_tokens":128,
                "inputs":{{"input_ids":"i","attention_mask":"m"}},{languages}
                "tasks":[{{"task":"sentiment","output":"o","kind":"single_label",
                          "labels":["negative","neutral","positive"]}}]}}"#
        );
        serde_json::from_str::<Manifest>(&text)
            .map_err(|e| NlpError::Model(e.to_string()))
            .and_then(|m| m.check(Path::new("manifest.json")).map(|()| m))
    }

    #[test]
    fn languages_default_to_english_and_gate_scores() {
        let english = with_languages("").unwrap();
        assert_eq!(english.languages, ["en"]);
        assert!(english.reads("en"));
        assert!(english.reads(crate::language::UNDETERMINED));
        assert!(!english.reads("es"));
        let any = with_languages(r#""languages":["*"],"#).unwrap();
        assert!(any.reads("ja"));
        let two = with_languages(r#""languages":["en","de"],"#).unwrap();
        assert!(two.reads("de") && !two.reads("fr"));
        for bad in [
            r#""languages":[],"#,
            r#""languages":["english"],"#,
            r#""languages":["EN"],"#,
        ] {
            let error = with_languages(bad).unwrap_err();
            assert!(error.to_string().contains("language"), "{bad}: {error}");
        }
    }
}
