//! The ONNX Runtime library and its environment: loaded once per process from a shared
//! library on disk (the `ort` crate's load-dynamic mode; nothing is downloaded).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::NlpError;

/// The ONNX Runtime version Pulse is built against (`ort`'s `api-31`).
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Where the library is looked for when the configuration names none: `ORT_LIB` (set by
/// Pulse's scripts), then where `scripts/setup` unpacks it.
pub fn default_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_LIB").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| {
        PathBuf::from(home).join(format!(
            ".local/onnxruntime/{ONNXRUNTIME_VERSION}/libonnxruntime.so.{ONNXRUNTIME_VERSION}"
        ))
    })
}

/// The process-wide environment, loading the library at `library` (or the default) on the
/// first call. Later calls return the same environment whatever path they pass.
pub fn environment(library: Option<&Path>) -> Result<&'static Environment, NlpError> {
    let loaded = ENVIRONMENT.get_or_init(|| {
        let path = library
            .map(Path::to_path_buf)
            .or_else(default_library)
            .ok_or_else(|| "no ONNX Runtime library configured and HOME is unset".to_string())?;
        if !path.exists() {
            return Err(format!(
                "ONNX Runtime library {} not found (scripts/setup installs it; or set \
                 enrich.onnxruntime_library)",
                path.display()
            ));
        }
        ort::init_from(&path)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?
            .with_name("pulse")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    });
    loaded
        .as_ref()
        .map_err(|message| NlpError::Runtime(message.clone()))
}
