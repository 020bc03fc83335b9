//! The enricher: one call per batch of posts, results in input order. Each task (sentiment,
//! emotion, entities) comes from the first configured model that answers it and reads the
//! post's language; keywords come from YAKE. Posts are spread over worker threads, each
//! running one post at a time on its own model sessions, so a post's scores never depend on
//! the other posts of its call.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use pulse_core::config::EnrichConfig;
use pulse_core::Enrichment;
use serde::Serialize;

use crate::language;
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
    workers: usize,
}

/// A post's text and the language tag its source gave, if any.
#[derive(Debug, Clone, Copy)]
pub struct PostText<'a> {
    pub text: &'a str,
    pub lang: Option<&'a str>,
}

/// What the enricher says of one post: its enrichment and its language
/// ([`crate::language::resolve`]). Serialized as the enrichment's fields and `lang`, as
/// `pulse analyze` and `POST /api/v1/analyze` answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Enriched {
    #[serde(flatten)]
    pub enrichment: Enrichment,
    pub lang: String,
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
        let workers = models
            .iter()
            .map(|(model, _)| model.sessions())
            .max()
            .unwrap_or_else(|| options.session_count());
        Ok(Self {
            keywords: KeywordExtractor::new(
                config.keywords_per_post,
                config.keyword_ngrams,
                config.keyword_text_chars,
            ),
            models,
            name,
            workers,
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

    /// Enriches texts whose language no source gave; one enrichment per text, in the same
    /// order. See [`Enricher::enrich_posts`].
    pub fn enrich(&self, texts: &[&str]) -> Result<Vec<Enrichment>, NlpError> {
        let posts: Vec<PostText<'_>> = texts
            .iter()
            .map(|text| PostText { text, lang: None })
            .collect();
        Ok(self
            .enrich_posts(&posts)?
            .into_iter()
            .map(|enriched| enriched.enrichment)
            .collect())
    }

    /// Enriches posts; one result per post, in the same order. Tasks no model answers stay
    /// empty, and so do the tasks of models that do not read the post's language; a text
    /// with nothing to read (whitespace, control characters) gets keywords only.
    ///
    /// Blocking CPU work on up to one thread per session: call it from `spawn_blocking` or
    /// a dedicated thread.
    pub fn enrich_posts(&self, posts: &[PostText<'_>]) -> Result<Vec<Enriched>, NlpError> {
        let workers = self.workers.min(posts.len());
        if workers <= 1 {
            return posts.iter().map(|post| self.enrich_one(0, post)).collect();
        }
        let next = AtomicUsize::new(0);
        let done: Vec<Result<Vec<(usize, Enriched)>, NlpError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|worker| {
                    let next = &next;
                    scope.spawn(move || {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(post) = posts.get(index) else { break };
                            done.push((index, self.enrich_one(worker, post)?));
                        }
                        Ok(done)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(NlpError::Inference("an enrichment worker panicked".into()))
                    })
                })
                .collect()
        });
        let mut slots: Vec<Option<Enriched>> = vec![None; posts.len()];
        for worker in done {
            for (index, enriched) in worker? {
                slots[index] = Some(enriched);
            }
        }
        slots
            .into_iter()
            .map(|slot| slot.ok_or_else(|| NlpError::Inference("a post was not enriched".into())))
            .collect()
    }

    fn enrich_one(&self, worker: usize, post: &PostText<'_>) -> Result<Enriched, NlpError> {
        let lang = language::resolve(post.text, post.lang);
        let mut enrichment = Enrichment {
            keywords: self.keywords.extract(post.text, &lang),
            ..Enrichment::default()
        };
        for (model, tasks) in &self.models {
            if !model.manifest().reads(&lang) {
                continue;
            }
            let prediction = model.predict(worker, post.text, tasks)?;
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
        Ok(Enriched { enrichment, lang })
    }
}

/// Session options of the `[enrich]` section.
pub fn model_options(config: &EnrichConfig) -> ModelOptions {
    ModelOptions {
        library: (!config.onnxruntime_library.is_empty())
            .then(|| Path::new(&config.onnxruntime_library).to_path_buf()),
        intra_threads: config.intra_threads,
        sessions: config.sessions,
    }
}
