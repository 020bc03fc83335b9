//! Logs (tracing, readable or JSON, on stderr) and the endpoints every long-running role
//! serves beside its work: Prometheus `/metrics`, liveness `/healthz` and readiness `/readyz`
//! (what orchestrators probe).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use pulse_core::config::{LogConfig, LogFormat, MetricsConfig};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Stderr for the logs, with write errors dropped: tracing-subscriber reports a failed write
/// with `eprintln!`, which panics when stderr is a closed pipe (`pulse up 2>&1 | head`, a
/// closed terminal), and a role must outlive its output.
struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Installs the global tracing subscriber.
pub fn init_logs(config: &LogConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.filter)
        .with_context(|| format!("invalid log filter `{}`", config.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| LogSink);
    match config.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// The endpoints a role serves: where, and the switch its `/readyz` answers by.
pub struct MetricsEndpoint {
    /// The bound address; `None` when metrics are disabled.
    pub address: Option<SocketAddr>,
    built: Arc<AtomicBool>,
}

impl MetricsEndpoint {
    /// The role's resources are built (models loaded, consumer and producer created):
    /// `/readyz` answers 200 from now until shutdown.
    pub fn ready(&self) {
        self.built.store(true, Ordering::Release);
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` (200 once [`MetricsEndpoint::ready`] is
/// called and until `shutdown`, 503 JSON before) until `shutdown`.
pub async fn serve_metrics(
    config: &MetricsConfig,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> anyhow::Result<MetricsEndpoint> {
    let built = Arc::new(AtomicBool::new(false));
    if !config.enabled {
        return Ok(MetricsEndpoint {
            address: None,
            built,
        });
    }
    let listener = bind_metrics(&config.listen).await?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(move || metrics(registry.clone())))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", {
            let built = built.clone();
            let shutdown = shutdown.clone();
            get(move || ready(built.load(Ordering::Acquire) && !shutdown.is_cancelled()))
        });
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = server.await {
            tracing::warn!(%error, "metrics server stopped");
        }
    });
    tracing::info!(%address, "serving /metrics");
    Ok(MetricsEndpoint {
        address: Some(address),
        built,
    })
}

/// Binds `listen`; when its port is taken (another Pulse process on the same machine, such
/// as a `pulse ingest` beside `pulse up`), binds a free port on the same host instead and
/// says where. Metrics are worth less than the role: a busy port never stops it.
async fn bind_metrics(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let error = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => return Ok(listener),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => error,
        Err(error) => {
            return Err(error).with_context(|| format!("cannot listen for metrics on {listen}"))
        }
    };
    let host = listen
        .rsplit_once(':')
        .map_or(listen, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let listener = tokio::net::TcpListener::bind((host, 0))
        .await
        .with_context(|| {
            format!("cannot listen for metrics on {listen} ({error}) nor on a free port")
        })?;
    let address = listener.local_addr()?;
    tracing::warn!(configured = listen, %address, %error, "metrics port taken; serving on a free port");
    Ok(listener)
}

async fn ready(ready: bool) -> (StatusCode, Json<Value>) {
    if ready {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": "unavailable",
                "detail": "the role is starting or draining",
            })),
        )
    }
}

async fn metrics(registry: Arc<Registry>) -> axum::response::Response {
    pulse_api::openmetrics(&registry)
}
