//! `pulse-devcql`: an in-memory CQL v4 server for local runs and tests, built on the
//! `kassandra` crate, because ScyllaDB and Cassandra cannot be installed on the development
//! machines. It loads its state at start and saves it on SIGTERM/SIGINT (and periodically),
//! so stopping and starting the local stack keeps the batch layer's data.
//!
//! Production uses real ScyllaDB; see the README for what this server cannot check.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use kassandra::error::DbError;
use kassandra::frame::request::Request;
use kassandra::frame::response::error::Error as CqlError;
use kassandra::frame::response::Response;
use kassandra::frame::{request_stream, response_sink};
use kassandra::KassandraSession;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

/// An in-memory CQL v4 server for Pulse's local stack.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9042")]
    listen: SocketAddr,
    /// File the data is loaded from at start and saved to on shutdown.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Also save the state this often (seconds; 0 = only on shutdown).
    #[arg(long, default_value_t = 30)]
    save_every: u64,
}

type Shared = Arc<Mutex<KassandraSession>>;

fn lock(session: &Shared) -> MutexGuard<'_, KassandraSession> {
    // A panic inside kassandra is caught per request; the session stays usable.
    session
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let session = match &args.state {
        Some(path) if path.exists() => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read state {}", path.display()))?;
            let session = KassandraSession::load_state(&bytes)
                .map_err(|e| anyhow::anyhow!("cannot load state {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), bytes = bytes.len(), "state loaded");
            session
        }
        _ => KassandraSession::new(),
    };
    let session: Shared = Arc::new(Mutex::new(session));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "cql server ready");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut saver = tokio::time::interval(Duration::from_secs(args.save_every.max(1)));
    saver.tick().await;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "client connected");
                    tokio::spawn(serve_client(stream, session.clone()));
                }
                Err(error) => tracing::warn!(%error, "accept failed"),
            },
            _ = saver.tick(), if args.save_every > 0 => {
                if let Some(path) = &args.state {
                    save(&session, path);
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    // The lock is held from the final save until the process exits: connections still open
    // cannot get a write acknowledged that the saved state would not contain.
    let guard = lock(&session);
    if let Some(path) = &args.state {
        save_state(&guard, path);
    }
    tracing::info!("cql server stopped");
    std::process::exit(0);
}

fn save(session: &Shared, path: &Path) {
    save_state(&lock(session), path);
}

/// Writes the state atomically (temporary file, then rename).
fn save_state(session: &KassandraSession, path: &Path) {
    let bytes = match std::panic::catch_unwind(AssertUnwindSafe(|| session.save_state())) {
        Ok(bytes) => bytes,
        Err(_) => {
            tracing::error!("cannot serialize state; keeping the previous file");
            return;
        }
    };
    let temporary = path.with_extension("tmp");
    let written =
        std::fs::write(&temporary, &bytes).and_then(|()| std::fs::rename(&temporary, path));
    match written {
        Ok(()) => tracing::info!(path = %path.display(), bytes = bytes.len(), "state saved"),
        Err(error) => tracing::error!(%error, path = %path.display(), "cannot save state"),
    }
}

async fn serve_client(mut stream: TcpStream, session: Shared) {
    let (mut read, mut write) = stream.split();
    let mut requests = request_stream(&mut read);
    let mut responses = response_sink(&mut write);
    while let Some(frame) = requests.next().await {
        let (params, opcode, body) = match frame {
            Ok(frame) => frame,
            Err(error) => {
                tracing::debug!(%error, "cannot read frame; closing connection");
                return;
            }
        };
        let response = if params.version.is_unsupported() {
            Response::unsupported_version()
        } else {
            match Request::deserialize(opcode, &body, params.flags) {
                Ok(request) => answer(&session, request),
                Err(error) => Response::Error(error),
            }
        };
        if let Err(error) = responses.send((response, params.stream)).await {
            tracing::debug!(%error, "cannot write response; closing connection");
            return;
        }
    }
}

fn answer(session: &Shared, request: Request<'_>) -> Response {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut session = lock(session);
        match request {
            Request::StartUp(_) | Request::Register { .. } | Request::AuthResponse => {
                Response::Ready
            }
            Request::Options => Response::options(),
            Request::Query(query) => result(session.process(query)),
            Request::Prepare(query) => {
                let id = statement_id(&query);
                result(session.prepare_with_id(query, id))
            }
            Request::Execute(execute) => result(session.execute(execute)),
            Request::Batch(batch) => result(session.process_batch(batch)),
        }
    }));
    outcome.unwrap_or_else(|_| {
        Response::Error(CqlError::new(
            DbError::ServerError,
            "internal error while serving the request",
        ))
    })
}

/// A prepared statement's id derived from the statement, as Cassandra and ScyllaDB do (an
/// MD5 of the query text there): a client that re-prepares after a server restart gets the
/// same id back, which drivers require. kassandra's own ids are random.
fn statement_id(query: &kassandra::cql::query::QueryString) -> u128 {
    let digest = Sha256::digest(format!("{query:?}").as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(id)
}

fn result(outcome: Result<kassandra::frame::response::result::QueryResult, CqlError>) -> Response {
    match outcome {
        Ok(result) => Response::Result(result),
        Err(error) => Response::Error(error),
    }
}
