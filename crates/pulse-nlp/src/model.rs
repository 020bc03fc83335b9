//! One model directory ready for inference: its tokenizer, a pool of ONNX Runtime sessions,
//! and the decoder of each task it answers.
//!
//! Every text runs alone, never in a batch: the shipped graph quantizes activations with
//! scales computed over the whole input tensor, so in a batch a text's scores would depend on
//! its companions and on their padding. Alone, the same text gets the same scores wherever it
//! arrives, and no compute is spent on padding; throughput comes from running texts on
//! several sessions at once, one per worker thread.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use pulse_core::{Entity, Sentiment};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use crate::decode::{self, Tag, TokenView};
use crate::manifest::{Manifest, OutputKind, Task, TaskSpec};
use crate::NlpError;

/// How models run: sessions and their threads.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// ONNX Runtime library to load (`None`: [`crate::runtime::default_library`]).
    pub library: Option<PathBuf>,
    /// Intra-op threads of each session (at least 1).
    pub intra_threads: usize,
    /// Sessions, each running one text at a time on its own worker; 0: one per core left
    /// after `intra_threads` (the cores this process may use, cgroup quotas included).
    pub sessions: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            library: None,
            intra_threads: 1,
            sessions: 0,
        }
    }
}

impl ModelOptions {
    /// How many sessions (and enrichment workers) these options give.
    pub fn session_count(&self) -> usize {
        if self.sessions > 0 {
            return self.sessions;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.intra_threads.max(1)).max(1)
    }
}

/// How one output tensor becomes part of an enrichment.
#[derive(Debug, Clone)]
enum Head {
    Sentiment {
        output: String,
        order: [usize; 3],
    },
    Emotion {
        output: String,
        labels: Vec<String>,
        multi_label: bool,
    },
    Entities {
        output: String,
        tags: Vec<Tag>,
    },
}

impl Head {
    fn new(spec: &TaskSpec) -> Result<Head, NlpError> {
        let output = spec.output.clone();
        Ok(match spec.task {
            Task::Sentiment => Head::Sentiment {
                output,
                order: decode::sentiment_order(&spec.labels).ok_or_else(|| {
                    NlpError::Model(format!("sentiment labels {:?} unusable", spec.labels))
                })?,
            },
            Task::Emotion => Head::Emotion {
                output,
                labels: spec.labels.clone(),
                multi_label: spec.kind == OutputKind::MultiLabel,
            },
            Task::Entities => Head::Entities {
                output,
                tags: spec.labels.iter().map(|l| Tag::parse(l)).collect(),
            },
        })
    }

    fn task(&self) -> Task {
        match self {
            Head::Sentiment { .. } => Task::Sentiment,
            Head::Emotion { .. } => Task::Emotion,
            Head::Entities { .. } => Task::Entities,
        }
    }

    fn output(&self) -> &str {
        match self {
            Head::Sentiment { output, .. }
            | Head::Emotion { output, .. }
            | Head::Entities { output, .. } => output,
        }
    }

    /// Columns per row (sequence heads) or per token (the entity head).
    fn width(&self) -> usize {
        match self {
            Head::Sentiment { .. } => 3,
            Head::Emotion { labels, .. } => labels.len(),
            Head::Entities { tags, .. } => tags.len(),
        }
    }
}

/// What one model says about one text; tasks it was not asked for stay `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prediction {
    pub sentiment: Option<Sentiment>,
    pub emotions: Option<BTreeMap<String, f32>>,
    pub entities: Option<Vec<Entity>>,
}

/// The output tensors of one text's run, copied out of the session: `[tokens, width]` for
/// the entity head, `[width]` for sequence heads.
pub struct TextOutputs {
    heads: Vec<Vec<f32>>,
}

/// A loaded model directory.
pub struct Model {
    manifest: Manifest,
    tokenizer: Tokenizer,
    // `Session::run` takes `&mut`: one session per worker, so workers never wait on each
    // other; worker `w` uses session `w % len`.
    sessions: Vec<Mutex<Session>>,
    heads: Vec<Head>,
    token_type_ids: Option<String>,
    case_ids: Option<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.manifest.id())
            .field("tasks", &self.tasks())
            .finish()
    }
}

impl Model {
    /// Loads `dir` (model.onnx, tokenizer.json, and manifest.json or config.json).
    pub fn load(dir: &Path, options: &ModelOptions) -> Result<Model, NlpError> {
        let manifest = Manifest::load(dir)?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            NlpError::Model(format!("{}: {e}", dir.join("tokenizer.json").display()))
        })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: manifest.max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| NlpError::Model(format!("{}: truncation: {e}", dir.display())))?;

        let environment = crate::runtime::environment(options.library.as_deref())?;
        let graph = dir.join("model.onnx");
        let sessions = (0..options.session_count())
            .map(|_| {
                build_session(environment, &graph, options.intra_threads.max(1))
                    .map_err(|e| NlpError::Model(format!("{}: {e}", graph.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let session = &sessions[0];

        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let names = &manifest.inputs;
        for needed in [&names.input_ids, &names.attention_mask] {
            if !inputs.contains(&needed.as_str()) {
                return Err(NlpError::Model(format!(
                    "{}: the graph has no input {needed:?} (it has {inputs:?})",
                    graph.display()
                )));
            }
        }
        // Segment ids are fed when the graph takes them (exports differ).
        let token_type_ids = names
            .token_type_ids
            .clone()
            .filter(|name| inputs.contains(&name.as_str()))
            .or_else(|| {
                inputs
                    .contains(&"token_type_ids")
                    .then(|| "token_type_ids".into())
            });
        // Casing is fed only when the manifest names it: a graph input Pulse does not know
        // the meaning of is an error, not a guess.
        let case_ids = names
            .case_ids
            .clone()
            .filter(|name| inputs.contains(&name.as_str()));
        if let Some(name) = names.case_ids.as_ref().filter(|_| case_ids.is_none()) {
            return Err(NlpError::Model(format!(
                "{}: the manifest names the casing input {name:?}, the graph has none (it has {inputs:?})",
                graph.display()
            )));
        }
        let known = [
            Some(names.input_ids.as_str()),
            Some(names.attention_mask.as_str()),
            token_type_ids.as_deref(),
            case_ids.as_deref(),
        ];
        if let Some(unknown) = inputs.iter().find(|i| !known.contains(&Some(**i))) {
            return Err(NlpError::Model(format!(
                "{}: the graph takes an input Pulse cannot feed: {unknown:?}",
                graph.display()
            )));
        }
        let heads = manifest
            .tasks
            .iter()
            .map(Head::new)
            .collect::<Result<Vec<_>, _>>()?;
        for head in &heads {
            if !outputs.contains(&head.output()) {
                return Err(NlpError::Model(format!(
                    "{}: the graph has no output {:?} (it has {outputs:?})",
                    graph.display(),
                    head.output()
                )));
            }
        }
        tracing::info!(model = %manifest.id(), dir = %dir.display(), sessions = sessions.len(), tasks = ?heads.iter().map(Head::task).collect::<Vec<_>>(), "model loaded");
        Ok(Model {
            manifest,
            tokenizer,
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            heads,
            token_type_ids,
            case_ids,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The tasks this model answers.
    pub fn tasks(&self) -> Vec<Task> {
        self.heads.iter().map(Head::task).collect()
    }

    /// How many sessions this model runs texts on at once.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Tokenizes one text (truncated to the model's length). Only a bounded prefix of the
    /// text is read: even a word-piece-per-100-characters text fills the model before it.
    pub fn encode(&self, text: &str) -> Result<Encoding, NlpError> {
        let limit = self.manifest.max_tokens * 100;
        let bounded = match text.char_indices().nth(limit) {
            Some((cut, _)) => &text[..cut],
            None => text,
        };
        self.tokenizer
            .encode_char_offsets(bounded, true)
            .map_err(|e| NlpError::Inference(format!("tokenization failed: {e}")))
    }

    /// Whether an encoding has anything to read (a piece that is not a special token).
    pub fn readable(encoding: &Encoding) -> bool {
        encoding.get_word_ids().iter().any(Option::is_some)
    }

    /// One inference pass over one encoded text, on session `worker % sessions`. `text` is
    /// what was encoded: the casing input is read from it.
    pub fn run(
        &self,
        worker: usize,
        text: &str,
        encoding: &Encoding,
    ) -> Result<TextOutputs, NlpError> {
        let tokens = encoding.len();
        let shape = vec![1_i64, tokens as i64];
        let tensor = |values: Vec<i64>| {
            Tensor::from_array((shape.clone(), values))
                .map(SessionInputValue::from)
                .map_err(|e| NlpError::Inference(format!("input tensor: {e}")))
        };
        let widen = |values: &[u32]| values.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
        let names = &self.manifest.inputs;
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (
                Cow::from(names.input_ids.as_str()),
                tensor(widen(encoding.get_ids()))?,
            ),
            (
                Cow::from(names.attention_mask.as_str()),
                tensor(widen(encoding.get_attention_mask()))?,
            ),
        ];
        if let Some(name) = &self.token_type_ids {
            inputs.push((
                Cow::from(name.as_str()),
                tensor(widen(encoding.get_type_ids()))?,
            ));
        }
        if let Some(name) = &self.case_ids {
            let cases = crate::casing::classes(
                text,
                encoding.get_offsets(),
                encoding.get_special_tokens_mask(),
            );
            inputs.push((Cow::from(name.as_str()), tensor(cases)?));
        }
        let session = &self.sessions[worker % self.sessions.len()];
        let mut session = session
            .lock()
            .map_err(|_| NlpError::Inference("a previous inference panicked".into()))?;
        let outputs = session
            .run(inputs)
            .map_err(|e| NlpError::Inference(format!("inference failed: {e}")))?;
        let mut heads = Vec::with_capacity(self.heads.len());
        for head in &self.heads {
            let value = outputs.get(head.output()).ok_or_else(|| {
                NlpError::Inference(format!("output {:?} missing", head.output()))
            })?;
            let (shape, values) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| NlpError::Inference(format!("output {:?}: {e}", head.output())))?;
            let expected: Vec<i64> = match head {
                Head::Entities { .. } => vec![1, tokens as i64, head.width() as i64],
                _ => vec![1, head.width() as i64],
            };
            if **shape != *expected {
                return Err(NlpError::Inference(format!(
                    "output {:?} has shape {:?}, expected {expected:?} (labels and graph disagree)",
                    head.output(),
                    &**shape
                )));
            }
            heads.push(values.to_vec());
        }
        Ok(TextOutputs { heads })
    }

    /// Tokenizes, runs and decodes one text for the `wanted` tasks on session
    /// `worker % sessions`. A text with nothing to read gets an empty prediction.
    pub fn predict(
        &self,
        worker: usize,
        text: &str,
        wanted: &[Task],
    ) -> Result<Prediction, NlpError> {
        let mut prediction = Prediction::default();
        if !self.heads.iter().any(|h| wanted.contains(&h.task())) {
            return Ok(prediction);
        }
        let encoding = self.encode(text)?;
        if !Self::readable(&encoding) {
            return Ok(prediction);
        }
        let outputs = self.run(worker, text, &encoding)?;
        self.decode(&outputs, text, &encoding, wanted, &mut prediction);
        Ok(prediction)
    }

    fn decode(
        &self,
        outputs: &TextOutputs,
        text: &str,
        encoding: &Encoding,
        wanted: &[Task],
        prediction: &mut Prediction,
    ) {
        for (head, values) in self.heads.iter().zip(&outputs.heads) {
            if !wanted.contains(&head.task()) {
                continue;
            }
            let width = head.width();
            match head {
                Head::Sentiment { order, .. } => {
                    prediction.sentiment = Some(decode::sentiment(values, *order));
                }
                Head::Emotion {
                    labels,
                    multi_label,
                    ..
                } => {
                    prediction.emotions = Some(decode::emotions(values, labels, *multi_label));
                }
                Head::Entities { tags, .. } => {
                    let view = TokenView {
                        word_ids: encoding.get_word_ids(),
                        offsets: encoding.get_offsets(),
                    };
                    prediction.entities = Some(decode::entities(text, &view, tags, |token| {
                        &values[token * width..(token + 1) * width]
                    }));
                }
            }
        }
    }
}

fn build_session(
    environment: &ort::environment::Environment,
    graph: &Path,
    intra_threads: usize,
) -> ort::Result<Session> {
    let mut builder =
        Session::builder(environment)?.with_optimization_level(GraphOptimizationLevel::All)?;
    if intra_threads > 0 {
        builder = builder.with_intra_threads(intra_threads)?;
    }
    builder.commit_from_file(graph)
}
