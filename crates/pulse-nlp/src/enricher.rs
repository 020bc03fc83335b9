//! The batch enricher: one call per batch of post texts, in input order. Each task
//! (sentiment, emotion, entities) comes from the first configured model that answers it;
//! keywords come from YAKE.

use std::path::{Path, PathBuf};

use pulse_core::config::EnrichConfig;
use pulse_core::Enrichment;

use crate::manifest::Task;
use crate::model::{Model, ModelOptions};
use crate::{KeywordExtractor, NlpError};

/// Turns texts into enrichments. Created once per process and shared by reference.
#[derive(Debug)]
pub struct Enricher {
    keywords: KeywordExtractor,
    /// Loaded models with the tasks each one serves (at least one each).
    models: Vec<(Model, Vec<Task>)>,
    name: String,
}

impl Enricher {
    /// An enricher configured by the `[enrich]` section: loads every model directory of
    /// `enrich.models` (relative paths from the current directory).
    pub fn new(config: &EnrichConfig) -> Result<Self, NlpError> {
        let dirs: Vec<PathBuf> = config.models.iter().map(PathBuf::from).collect();
        Self::with_models(config, &dirs)
    }

    /// An enricher over the given model directories instead of `enrich.models`.
    pub fn with_models(config: &EnrichConfig, dirs: &[PathBuf]) -> Result<Self, NlpError> {
        let options = model_options(config);
        let mut models: Vec<(Model, Vec<Task>)> = Vec::new();
        let mut served: Vec<Task> = Vec::new();
        for dir in dirs {
            let model = Model::load(dir, &options)?;
            let tasks: Vec<Task> = model
                .tasks()
                .into_iter()
                .filter(|task| !served.contains(task))
                .collect();
            if tasks.is_empty() {
                tracing::warn!(model = %model.manifest().id(), dir = %dir.display(), "every task of this model comes from an earlier one; it is not used");
                continue;
            }
            served.extend(&tasks);
            models.push((model, tasks));
        }
        let name = if models.is_empty() {
            "keywords-only@1".to_string()
        } else {
            models
                .iter()
                .map(|(model, _)| model.manifest().id())
                .collect::<Vec<_>>()
                .join("+")
        };
        Ok(Self {
            keywords: KeywordExtractor::new(
                config.keywords_per_post,
                config.keyword_ngrams,
                config.keyword_text_chars,
            ),
            models,
            name,
        })
    }

    /// `name@version` of what produces the enrichments (models joined by `+`), recorded on
    /// every enriched post. Without models only keywords are computed, and the name says so.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// The loaded models, in the order their tasks are taken.
    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.models.iter().map(|(model, _)| model)
    }

    /// Enriches a batch of texts; the result has one entry per text, in the same order.
    /// Tasks no model answers stay empty; a text with nothing to read (whitespace, control
    /// characters) gets keywords only.
    ///
    /// Blocking CPU work: call it from `spawn_blocking` or a dedicated thread.
    pub fn enrich(&self, texts: &[&str]) -> Result<Vec<Enrichment>, NlpError> {
        let mut enrichments: Vec<Enrichment> = texts
            .iter()
            .map(|text| Enrichment {
                keywords: self.keywords.extract(text),
                ..Enrichment::default()
            })
            .collect();
        for (model, tasks) in &self.models {
            for (enrichment, prediction) in enrichments.iter_mut().zip(model.predict(texts, tasks)?)
            {
                if let Some(sentiment) = prediction.sentiment {
                    enrichment.sentiment = Some(sentiment);
                }
                if let Some(emotions) = prediction.emotions {
                    enrichment.emotions = emotions;
                }
                if let Some(entities) = prediction.entities {
                    enrichment.entities = entities;
                }
            }
        }
        Ok(enrichments)
    }
}

/// Session and batching options of the `[enrich]` section.
pub fn model_options(config: &EnrichConfig) -> ModelOptions {
    ModelOptions {
        library: (!config.onnxruntime_library.is_empty())
            .then(|| Path::new(&config.onnxruntime_library).to_path_buf()),
        intra_threads: config.intra_threads,
        max_batch_posts: config.max_batch_posts,
        max_batch_tokens: config.max_batch_tokens,
    }
}
