//! A service under test on a loopback port, with its App's background work beside it, both
//! stopped when the test drops it.

use std::future::Future;
use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use wharf_runtime::GrpcServer;
use wharf_runtime::server::ServerConfig;

/// A server on `127.0.0.1`, on a free port.
pub async fn loopback_server() -> GrpcServer {
    GrpcServer::bind(&ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServerConfig::default()
    })
    .await
    .expect("bind a loopback port")
}

/// A served service; stops (server and background work) on drop.
#[derive(Debug)]
pub struct Served {
    pub addr: SocketAddr,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Serves `server` and runs `background` (relays, consumers) until dropped. A background
    /// failure panics its task, which the test sees as its service not answering.
    pub fn start<F, E>(server: GrpcServer, background: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let addr = server.local_addr();
        let stop = CancellationToken::new();
        let serving = tokio::spawn({
            let stop = stop.clone();
            async move {
                let _ = server.run_until_stopped(stop.cancelled_owned()).await;
            }
        });
        let work = background(stop.clone());
        let working = tokio::spawn(async move {
            if let Err(err) = work.await {
                panic!("the service's background work failed: {err}");
            }
        });
        Self {
            addr,
            stop,
            tasks: vec![serving, working],
        }
    }
}

impl Served {
    /// Stops gracefully, as a signal would: the server drains (streams get their reconnect
    /// hints) and the background work ends; waits for both.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}
