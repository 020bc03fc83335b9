//! One model directory ready for inference: its tokenizer, one ONNX Runtime session, and the
//! decoder of each task it answers. Texts are batched by token length so that little of a
//! batch is padding.

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

/// How models run: threads and batch shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// ONNX Runtime library to load (`None`: [`crate::runtime::default_library`]).
    pub library: Option<PathBuf>,
    /// Intra-op threads of each session; 0 lets ONNX Runtime use one per core.
    pub intra_threads: usize,
    /// Most texts in one inference batch.
    pub max_batch_posts: usize,
    /// Most tokens in one inference batch, padding included.
    pub max_batch_tokens: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            library: None,
            intra_threads: 0,
            max_batch_posts: 32,
            max_batch_tokens: 2_048,
        }
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

/// The output tensors of one batch, copied out of the session: `[rows, tokens, width]`
/// (tokens = 1 for sequence heads).
pub struct BatchOutputs {
    tokens: usize,
    heads: Vec<Vec<f32>>,
}

/// A loaded model directory.
pub struct Model {
    manifest: Manifest,
    tokenizer: Tokenizer,
    // `Session::run` takes `&mut`; one session per process, its runs one at a time (each
    // already uses every intra-op thread).
    session: Mutex<Session>,
    heads: Vec<Head>,
    token_type_ids: Option<String>,
    options: ModelOptions,
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
        let session = build_session(environment, &graph, options.intra_threads)
            .map_err(|e| NlpError::Model(format!("{}: {e}", graph.display())))?;

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
        let known = [
            Some(names.input_ids.as_str()),
            Some(names.attention_mask.as_str()),
            token_type_ids.as_deref(),
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
        tracing::info!(model = %manifest.id(), dir = %dir.display(), tasks = ?heads.iter().map(Head::task).collect::<Vec<_>>(), "model loaded");
        Ok(Model {
            manifest,
            tokenizer,
            session: Mutex::new(session),
            heads,
            token_type_ids,
            options: options.clone(),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The tasks this model answers.
    pub fn tasks(&self) -> Vec<Task> {
        self.heads.iter().map(Head::task).collect()
    }

    /// Tokenizes texts (truncated to the model's length). Only a bounded prefix of each
    /// text is read: even a word-piece-per-100-characters text fills the model before it.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoding>, NlpError> {
        let limit = self.manifest.max_tokens * 100;
        let bounded: Vec<&str> = texts
            .iter()
            .map(|text| match text.char_indices().nth(limit) {
                Some((cut, _)) => &text[..cut],
                None => text,
            })
            .collect();
        self.tokenizer
            .encode_batch_char_offsets(bounded, true)
            .map_err(|e| NlpError::Inference(format!("tokenization failed: {e}")))
    }

    /// Indices of `encodings` grouped into batches of similar length: sorted by length,
    /// each batch capped by posts and by padded tokens. Texts with nothing to read (only
    /// special tokens) are left out.
    pub fn batches(&self, encodings: &[Encoding]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..encodings.len())
            .filter(|&i| encodings[i].get_word_ids().iter().any(Option::is_some))
            .collect();
        order.sort_by_key(|&i| encodings[i].len());
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        for index in order {
            let width = encodings[index].len();
            let fits = current.len() < self.options.max_batch_posts.max(1)
                && (current.len() + 1) * width <= self.options.max_batch_tokens.max(width);
            if !fits {
                batches.push(std::mem::take(&mut current));
            }
            current.push(index);
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }

    /// One inference pass over a batch of encodings (padded to the longest).
    pub fn run(&self, batch: &[&Encoding]) -> Result<BatchOutputs, NlpError> {
        let rows = batch.len();
        let tokens = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        // Padded positions keep id 0: their attention mask is 0, so no real token reads them.
        let mut ids = vec![0i64; rows * tokens];
        let mut mask = vec![0i64; rows * tokens];
        let mut types = vec![0i64; rows * tokens];
        for (row, encoding) in batch.iter().enumerate() {
            let base = row * tokens;
            for (t, ((&id, &m), &ty)) in encoding
                .get_ids()
                .iter()
                .zip(encoding.get_attention_mask())
                .zip(encoding.get_type_ids())
                .enumerate()
            {
                ids[base + t] = i64::from(id);
                mask[base + t] = i64::from(m);
                types[base + t] = i64::from(ty);
            }
        }
        let shape = vec![rows as i64, tokens as i64];
        let tensor = |values: Vec<i64>| {
            Tensor::from_array((shape.clone(), values))
                .map(SessionInputValue::from)
                .map_err(|e| NlpError::Inference(format!("input tensor: {e}")))
        };
        let names = &self.manifest.inputs;
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (Cow::from(names.input_ids.as_str()), tensor(ids)?),
            (Cow::from(names.attention_mask.as_str()), tensor(mask)?),
        ];
        if let Some(name) = &self.token_type_ids {
            inputs.push((Cow::from(name.as_str()), tensor(types)?));
        }
        let mut session = self
            .session
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
                Head::Entities { .. } => vec![rows as i64, tokens as i64, head.width() as i64],
                _ => vec![rows as i64, head.width() as i64],
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
        Ok(BatchOutputs { tokens, heads })
    }

    /// Tokenizes, runs and decodes `texts` for the `wanted` tasks; one prediction per text,
    /// in input order.
    pub fn predict(&self, texts: &[&str], wanted: &[Task]) -> Result<Vec<Prediction>, NlpError> {
        let mut predictions = vec![Prediction::default(); texts.len()];
        if !self.heads.iter().any(|h| wanted.contains(&h.task())) {
            return Ok(predictions);
        }
        let encodings = self.encode(texts)?;
        for batch in self.batches(&encodings) {
            let members: Vec<&Encoding> = batch.iter().map(|&i| &encodings[i]).collect();
            let outputs = self.run(&members)?;
            for (row, &index) in batch.iter().enumerate() {
                self.decode_row(
                    &outputs,
                    row,
                    texts[index],
                    &encodings[index],
                    wanted,
                    &mut predictions[index],
                );
            }
        }
        Ok(predictions)
    }

    fn decode_row(
        &self,
        outputs: &BatchOutputs,
        row: usize,
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
                    let logits = &values[row * width..(row + 1) * width];
                    prediction.sentiment = Some(decode::sentiment(logits, *order));
                }
                Head::Emotion {
                    labels,
                    multi_label,
                    ..
                } => {
                    let logits = &values[row * width..(row + 1) * width];
                    prediction.emotions = Some(decode::emotions(logits, labels, *multi_label));
                }
                Head::Entities { tags, .. } => {
                    let base = row * outputs.tokens * width;
                    let view = TokenView {
                        word_ids: encoding.get_word_ids(),
                        offsets: encoding.get_offsets(),
                    };
                    prediction.entities = Some(decode::entities(text, &view, tags, |token| {
                        &values[base + token * width..base + (token + 1) * width]
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
