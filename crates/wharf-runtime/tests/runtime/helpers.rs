//! Shared test scaffolding: a gated echo service whose calls the test can hold and release,
//! and a server on port 0. Throwaway databases come from `wharf-testkit`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use wharf_proto::wharf::echo::v1::echo_service_client::EchoServiceClient;
use wharf_proto::wharf::echo::v1::echo_service_server::{EchoService, EchoServiceServer};
use wharf_proto::wharf::echo::v1::{EchoRequest, EchoResponse};
use wharf_runtime::server::{ServerError, Stopped};
use wharf_runtime::{GrpcServer, ServerConfig};

/// An echo service whose calls announce themselves on `entered` and, when `work_ms` is non-zero,
/// wait for a permit on `release` instead of sleeping: the test decides when work ends.
#[derive(Clone)]
pub struct GatedEcho {
    entered: mpsc::UnboundedSender<String>,
    release: Arc<Semaphore>,
}

#[tonic::async_trait]
impl EchoService for GatedEcho {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let request = request.into_inner();
        let _ = self.entered.send(request.message.clone());
        if request.work_ms > 0 {
            let permit = self.release.acquire().await.expect("semaphore open");
            permit.forget();
        }
        Ok(Response::new(EchoResponse {
            message: request.message,
            payload: request.payload,
        }))
    }
}

/// A running server with its gates and its shutdown trigger.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub entered: mpsc::UnboundedReceiver<String>,
    pub release: Arc<Semaphore>,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub stopped: tokio::task::JoinHandle<Result<Stopped, ServerError>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        let (entered_tx, entered) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        let mut server = GrpcServer::bind(&config).await.expect("bind");
        server.add_service(EchoServiceServer::new(GatedEcho {
            entered: entered_tx,
            release: Arc::clone(&release),
        }));
        let addr = server.local_addr();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let stopped = tokio::spawn(server.run_until_stopped(async {
            let _ = shutdown_rx.await;
        }));
        Self {
            addr,
            entered,
            release,
            shutdown: Some(shutdown_tx),
            stopped,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn client(&self) -> EchoServiceClient<Channel> {
        EchoServiceClient::new(self.channel().await)
    }

    /// Waits until `count` calls have entered the handler.
    pub async fn wait_entered(&mut self, count: usize) {
        for _ in 0..count {
            tokio::time::timeout(Duration::from_secs(10), self.entered.recv())
                .await
                .expect("a call should reach the handler within 10 s")
                .expect("service alive");
        }
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn local_config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..ServerConfig::default()
    }
}

pub fn echo(message: &str, work: bool) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        payload: Vec::new(),
        work_ms: u32::from(work),
    }
}
