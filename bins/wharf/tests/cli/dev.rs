//! `wharf dev`: serves with health and reflection, and exits cleanly on SIGTERM.

use std::time::Duration;

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wharf_proto::wharf::auth::v1::auth_service_client::AuthServiceClient;
use wharf_proto::wharf::auth::v1::{GetJwksRequest, RegisterRequest, UserStatus};
use wharf_proto::wharf::echo::v1::EchoRequest;
use wharf_proto::wharf::echo::v1::echo_service_client::EchoServiceClient;

use crate::helpers::{Running, wharf};

fn start_dev(database_url: &str) -> (Running, String) {
    let mut command = wharf();
    // The test command brought the stack up; dev uses the configured services as they are,
    // with a database, a namespace and a key prefix of this test's own.
    let tag = wharf_testkit::unique_name("dev");
    command.args(["dev", "--no-stack", "--listen", "127.0.0.1:0"]);
    command.args(["--set", "server.shutdown_grace=5s"]);
    command.args(["--set", &format!("database.url={database_url}")]);
    command.args(["--set", &format!("events.namespace={tag}")]);
    command.args(["--set", &format!("redis.key_prefix={tag}:")]);
    let mut dev = Running::spawn(command);
    let line = dev.wait_for_line("listening on", Duration::from_secs(60));
    let addr = line.rsplit(' ').next().expect("address").to_owned();
    (dev, addr)
}

/// `wharf dev` answers health SERVING for every service, serves real calls (echo; auth with a
/// generated development key), prints a grpcurl example, and exits 0 on SIGTERM after draining
/// (not by cutting calls).
///
/// Multi-threaded so the client's connection task keeps running (and answers the server's
/// GOAWAY) while the test thread blocks waiting for the process to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_and_stops_on_sigterm() {
    let db = wharf_testkit::FreshDatabase::create().await.unwrap();
    let (mut dev, addr) = start_dev(&db.config.url);
    dev.wait_for_line("grpcurl -plaintext", Duration::from_secs(5));

    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("dev accepts connections");
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
    let auth_health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "wharf.auth.v1.AuthService".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(auth_health.status, ServingStatus::Serving as i32);

    let mut auth = AuthServiceClient::new(channel.clone());
    let jwks = auth.get_jwks(GetJwksRequest {}).await.unwrap().into_inner();
    assert_eq!(jwks.keys.len(), 1, "the generated development key");
    let registered = auth
        .register(RegisterRequest {
            email: "dev@example.com".to_owned(),
            password: "a long enough password".to_owned(),
            handle: "dev_user".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registered.status, UserStatus::Pending as i32);

    let echo = EchoServiceClient::new(channel)
        .echo(EchoRequest {
            message: "hello".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(echo.message, "hello");

    dev.signal("TERM");
    let status = dev.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "wharf dev exited with {status}");
    let drained = dev.wait_for_line("stopped cleanly", Duration::from_secs(1));
    assert!(!drained.is_empty());
}

/// A bad configuration value stops `wharf dev` before it serves, naming the key.
#[test]
fn dev_refuses_a_bad_setting() {
    let output = wharf()
        .args([
            "dev",
            "--no-stack",
            "--set",
            "server.max_concurrent_requests=lots",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("key `server.max_concurrent_requests`"),
        "{stderr}"
    );
}
