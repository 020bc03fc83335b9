//! `pulse analyze`: enrichment without Kafka. Reads texts (one per line, or JSON lines with a
//! `text` field and optionally the source's `lang` tag) from a file or standard input and
//! writes one JSON enrichment per input line to standard output, in input order, with the
//! language Pulse gave the text (a model scores only the languages it reads).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pulse_core::PulseConfig;
use pulse_ingest::file::lines::{read_line, Line, DEFAULT_MAX_LINE_BYTES};
use pulse_nlp::{Enricher, PostText};
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Texts, one per line, or JSON lines with a `text` field and optionally a `lang` tag
    /// (told apart by the first non-blank line); standard input when absent.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// A model directory to use instead of `enrich.models`.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Lines enriched together (they are batched by length for the model).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Longest line read, in bytes; longer ones are reported, not read whole.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
}

/// What one input line asks for.
enum Request {
    /// A text and the language tag its line gave, if any.
    Post {
        text: String,
        lang: Option<String>,
    },
    Invalid(String),
}

/// Whether lines are plain texts or JSON objects; decided by the first non-blank line.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Undecided,
    Text,
    Json,
}

impl Mode {
    fn request(&mut self, bytes: Vec<u8>) -> Request {
        let line = match String::from_utf8(bytes) {
            Ok(line) => line,
            Err(e) => return Request::Invalid(format!("not valid utf-8: {}", e.utf8_error())),
        };
        if *self == Mode::Undecided && !line.trim().is_empty() {
            let object = serde_json::from_str::<Value>(&line).is_ok_and(|v| v.is_object());
            *self = if object { Mode::Json } else { Mode::Text };
        }
        match *self {
            Mode::Json if !line.trim().is_empty() => match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(mut object)) => {
                    let lang = match object.remove("lang") {
                        Some(Value::String(lang)) => Some(lang),
                        None | Some(Value::Null) => None,
                        Some(_) => return Request::Invalid("field `lang` is not a string".into()),
                    };
                    match object.remove("text") {
                        Some(Value::String(text)) => Request::Post { text, lang },
                        Some(_) => Request::Invalid("field `text` is not a string".into()),
                        None => Request::Invalid("no `text` field".into()),
                    }
                }
                Ok(_) => Request::Invalid("not a JSON object".into()),
                Err(e) => Request::Invalid(format!("not JSON: {e}")),
            },
            _ => Request::Post {
                text: line,
                lang: None,
            },
        }
    }
}

/// Runs `pulse analyze`; exits 1 when some line could not be read (each such line gets an
/// `{"line", "error"}` object in its place, so outputs stay aligned with inputs).
pub async fn run(args: AnalyzeArgs, config: PulseConfig) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || analyze(args, config))
        .await
        .context("the analysis task failed")?
}

fn analyze(args: AnalyzeArgs, config: PulseConfig) -> anyhow::Result<ExitCode> {
    let enricher = match &args.model {
        Some(dir) => Enricher::with_models(&config.enrich, std::slice::from_ref(dir)),
        None => Enricher::new(&config.enrich),
    }
    .context("cannot load the enrichment models")?;
    let (name, mut reader): (String, Box<dyn BufRead>) = match &args.input {
        Some(path) => (
            path.display().to_string(),
            Box::new(BufReader::new(
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
            )),
        ),
        None => ("<stdin>".to_string(), Box::new(BufReader::new(io::stdin()))),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut mode = Mode::Undecided;
    let mut number = 0usize;
    let mut failed = 0usize;
    let mut done = false;
    while !done {
        let mut requests: Vec<(usize, Request)> = Vec::with_capacity(args.batch as usize);
        while requests.len() < args.batch as usize {
            let line = read_line(&mut reader, args.max_line_bytes)
                .with_context(|| format!("cannot read {name} after line {number}"))?;
            let request = match line {
                None => {
                    done = true;
                    break;
                }
                Some(Line::Bytes(bytes)) => mode.request(bytes),
                Some(Line::TooLong { bytes, .. }) => Request::Invalid(format!(
                    "line of {bytes} bytes is longer than --max-line-bytes {}",
                    args.max_line_bytes
                )),
            };
            number += 1;
            requests.push((number, request));
        }
        let posts: Vec<PostText<'_>> = requests
            .iter()
            .filter_map(|(_, r)| match r {
                Request::Post { text, lang } => Some(PostText {
                    text,
                    lang: lang.as_deref(),
                }),
                Request::Invalid(_) => None,
            })
            .collect();
        let mut analyses = enricher.enrich_posts(&posts)?.into_iter();
        for (line, request) in &requests {
            let record = match request {
                Request::Post { .. } => match analyses.next() {
                    Some(enriched) => serde_json::to_value(enriched)?,
                    None => anyhow::bail!("the enricher returned fewer results than texts"),
                },
                Request::Invalid(error) => {
                    failed += 1;
                    crate::console::err(format_args!("error: {name}:{line}: {error}"));
                    json!({ "line": line, "error": error })
                }
            };
            serde_json::to_writer(&mut out, &record)
                .map_err(|e| crate::console::write_error(e.into()))?;
            out.write_all(b"\n").map_err(crate::console::write_error)?;
        }
        out.flush().map_err(crate::console::write_error)?;
    }
    if failed > 0 {
        crate::console::err(format_args!(
            "{failed} line(s) of {name} could not be analyzed"
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
