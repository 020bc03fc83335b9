//! What the in-process fakes of the sources' APIs share: a server on a free loopback port,
//! stopped when dropped.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A fake's server task and address.
pub(crate) struct FakeServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Binds a free loopback port and runs `serve` on it.
    pub(crate) async fn start<F>(serve: impl FnOnce(TcpListener) -> F) -> std::io::Result<Self>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener));
        Ok(Self { addr, task })
    }

    /// Serves an axum router.
    pub(crate) async fn http(app: axum::Router) -> std::io::Result<Self> {
        Self::start(|listener| async move {
            let _ = axum::serve(listener, app).await;
        })
        .await
    }

    /// `<scheme>://127.0.0.1:<port>`.
    pub(crate) fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
