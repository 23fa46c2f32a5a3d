//! The server's limits, proven on a real tonic server on port 0.

use std::time::{Duration, Instant};

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;
use wharf_proto::wharf::echo::v1::EchoRequest;
use wharf_runtime::ServerConfig;
use wharf_runtime::server::Stopped;

use crate::helpers::{TestServer, echo, local_config};

async fn health_of(server: &TestServer, service: &str) -> Result<i32, tonic::Status> {
    let mut health = HealthClient::new(server.channel().await);
    let response = health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(response.into_inner().status)
}

/// Health and reflection are served next to the services, and health says SERVING.
#[tokio::test]
async fn health_reports_every_service_serving() {
    let server = TestServer::start(local_config()).await;
    assert_eq!(
        health_of(&server, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        health_of(&server, "wharf.echo.v1.EchoService")
            .await
            .unwrap(),
        ServingStatus::Serving as i32
    );
    let unknown = health_of(&server, "wharf.nope.v1.Nope").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

/// A message larger than `max_decoding_message_bytes` is refused with RESOURCE_EXHAUSTED.
#[tokio::test]
async fn oversized_message_is_resource_exhausted() {
    let config = ServerConfig {
        max_decoding_message_bytes: 1024,
        ..local_config()
    };
    let server = TestServer::start(config).await;
    let mut client = server.client().await;

    let small = EchoRequest {
        payload: vec![7; 512],
        ..echo("small", false)
    };
    assert_eq!(
        client.echo(small).await.unwrap().into_inner().payload.len(),
        512
    );

    let large = EchoRequest {
        payload: vec![7; 4096],
        ..echo("large", false)
    };
    let status = client.echo(large).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

/// A handler still running at the server's request timeout is answered DEADLINE_EXCEEDED.
#[tokio::test]
async fn slow_handler_past_server_timeout_is_deadline_exceeded() {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(200),
        ..local_config()
    };
    let server = TestServer::start(config).await;
    let mut client = server.client().await;
    // The handler waits for a release that never comes: only the deadline can end the call.
    let status = client.echo(echo("stuck", true)).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

/// A client's `grpc-timeout` shorter than the server's timeout wins. Tested on the layer
/// itself: a tonic client also enforces its own deadline, which would hide the server's answer.
#[tokio::test]
async fn client_grpc_timeout_shorter_than_server_timeout_wins() {
    use tower::{Layer, ServiceExt};
    use wharf_runtime::server::layers::DeadlineLayer;

    let layer = DeadlineLayer::new(
        Duration::from_secs(30),
        tokio_util::sync::CancellationToken::new(),
    );
    let never = tower::service_fn(|_: http::Request<()>| {
        std::future::pending::<Result<http::Response<tonic::body::Body>, std::convert::Infallible>>(
        )
    });
    let request = http::Request::builder()
        .header("grpc-timeout", "100m")
        .body(())
        .unwrap();
    let response =
        tokio::time::timeout(Duration::from_secs(10), layer.layer(never).oneshot(request))
            .await
            .expect("the client's 100 ms deadline ends the call, not the server's 30 s")
            .unwrap();
    assert_eq!(response.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
}

/// Past `max_concurrent_requests` calls are shed immediately with RESOURCE_EXHAUSTED and a
/// retry hint, while health checks still answer; once the load is gone calls succeed again.
#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_shed() {
    let config = ServerConfig {
        max_concurrent_requests: 2,
        shed_retry_after: Duration::from_millis(250),
        ..local_config()
    };
    let mut server = TestServer::start(config).await;
    let client = server.client().await;

    let held: Vec<_> = (0..2)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move { client.echo(echo(&format!("held-{i}"), true)).await })
        })
        .collect();
    server.wait_entered(2).await;

    let started = Instant::now();
    let status = client.clone().echo(echo("extra", false)).await.unwrap_err();
    let shed_after = started.elapsed();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let retry = status.get_details_retry_info().expect("a RetryInfo detail");
    assert_eq!(retry.retry_delay, Some(Duration::from_millis(250)));
    // The held calls will not finish until released, so an answer at all means it was not
    // queued behind them; the bound only guards against a regression to queueing.
    assert!(
        shed_after < Duration::from_secs(2),
        "shed took {shed_after:?}"
    );

    assert_eq!(
        health_of(&server, "").await.unwrap(),
        ServingStatus::Serving as i32
    );

    server.release.add_permits(2);
    for call in held {
        call.await
            .unwrap()
            .expect("held calls complete once released");
    }
    let answer = client
        .clone()
        .echo(echo("after", false))
        .await
        .expect("capacity is back");
    assert_eq!(answer.into_inner().message, "after");
}

/// On shutdown: health flips to NOT_SERVING during the drain delay, an in-flight call
/// completes, and the server reports a clean drain.
#[tokio::test]
async fn shutdown_flips_health_and_drains_in_flight_calls() {
    let config = ServerConfig {
        shutdown_drain_delay: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(10),
        ..local_config()
    };
    let mut server = TestServer::start(config).await;
    let mut client = server.client().await;
    let in_flight = tokio::spawn(async move { client.echo(echo("in-flight", true)).await });
    server.wait_entered(1).await;

    server.trigger_shutdown();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = health_of(&server, "")
            .await
            .expect("still accepting during the drain delay");
        if status == ServingStatus::NotServing as i32 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never flipped to NOT_SERVING"
        );
        tokio::task::yield_now().await;
    }

    server.release.add_permits(1);
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    assert_eq!(answer.into_inner().message, "in-flight");
    // The 30 s drain delay is still running; the server must not have stopped yet.
    assert!(!server.stopped.is_finished());
}

/// A call that outlives the grace period is cut and the server still stops.
#[tokio::test]
async fn shutdown_cuts_calls_after_the_grace_period() {
    let config = ServerConfig {
        shutdown_grace: Duration::from_millis(200),
        ..local_config()
    };
    let mut server = TestServer::start(config).await;
    let mut client = server.client().await;
    let in_flight = tokio::spawn(async move { client.echo(echo("stuck", true)).await });
    server.wait_entered(1).await;

    server.trigger_shutdown();
    let stopped = tokio::time::timeout(Duration::from_secs(10), &mut server.stopped)
        .await
        .expect("the server stops within its grace period")
        .unwrap()
        .unwrap();
    assert_eq!(stopped, Stopped::GraceElapsed);
    let cut = in_flight.await.unwrap().unwrap_err();
    assert_eq!(
        cut.code(),
        Code::Unavailable,
        "a cut call is told to retry elsewhere: {cut:?}"
    );
}

/// Without in-flight calls, shutdown completes as a clean drain.
#[tokio::test]
async fn idle_shutdown_is_a_clean_drain() {
    let mut server = TestServer::start(local_config()).await;
    let mut client = server.client().await;
    client.echo(echo("one", false)).await.unwrap();
    server.trigger_shutdown();
    let stopped = tokio::time::timeout(Duration::from_secs(10), &mut server.stopped)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    assert_eq!(stopped, Stopped::Drained);
}

/// Reflection v1 lists the contracts, so grpcurl needs no proto files.
#[tokio::test]
async fn reflection_lists_services() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start(local_config()).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.expect("one response").unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "wharf.echo.v1.EchoService",
        "wharf.trading.v1.TradingService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}
