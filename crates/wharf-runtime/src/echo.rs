//! `wharf.echo.v1.EchoService`: the cheapest real RPC, served by `wharf dev` to check
//! connectivity end to end, by the benchmark harness as its baseline, and by the tests that
//! exercise the server's limits.

use std::time::Duration;

use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use wharf_proto::wharf::echo::v1::echo_service_server::{EchoService, EchoServiceServer};
use wharf_proto::wharf::echo::v1::{EchoRequest, EchoResponse};

/// Upper bound on simulated work, so the endpoint cannot be used to pin server slots.
pub const MAX_WORK: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Echo {
    pub fn server() -> EchoServiceServer<Self> {
        EchoServiceServer::new(Self)
    }
}

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let EchoRequest {
            message,
            payload,
            work_ms,
        } = request.into_inner();
        let work = Duration::from_millis(u64::from(work_ms));
        if work > MAX_WORK {
            let mut details = ErrorDetails::new();
            details.add_bad_request_violation(
                "work_ms",
                format!("must be at most {}", MAX_WORK.as_millis()),
            );
            return Err(Status::with_error_details(
                tonic::Code::InvalidArgument,
                "invalid echo request",
                details,
            ));
        }
        if !work.is_zero() {
            tokio::time::sleep(work).await;
        }
        Ok(Response::new(EchoResponse { message, payload }))
    }
}
