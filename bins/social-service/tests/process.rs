//! `social-service` as a process of its own, configured only with `--set` overrides and the
//! stack's `WHARF_*` sections: it serves on port 0 and says where, answers a registration and
//! serves the profile, and SIGTERM stops it cleanly; when its background work cannot run (a
//! durable consumer on the server contradicts its settings) it exits with the reason; without
//! token keys it refuses to start.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;
use wharf_events::Namespace;
use wharf_proto::Event;
use wharf_proto::wharf::auth::v1::UserRegistered;
use wharf_proto::wharf::social::v1::GetProfileRequest;
use wharf_proto::wharf::social::v1::social_service_client::SocialServiceClient;
use wharf_testkit::{FreshDatabase, TestNats, wait_until};
use wharf_tokens::{KeySet, TokenConfig, Tokens};

const KID: &str = "process-key";
const NAMESPACE: &str = "proc";
const WITHIN: Duration = Duration::from_secs(30);

/// The service's process, its stdout lines on a channel (read continuously, so the pipe never
/// fills), killed on drop.
struct Service {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Service {
    fn spawn(args: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_social-service"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn social-service");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    async fn line_containing(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(WITHIN, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            other => panic!("no stdout line containing {needle:?} ({other:?})"),
        }
    }

    /// The address of a `social-service listening on ADDR` line.
    async fn address(&mut self) -> SocketAddr {
        let line = self.line_containing("social-service listening on ").await;
        line.rsplit(' ')
            .next()
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }
}

/// A database migrated for social, a NATS of its own, and the settings that point the service
/// at them, with the issuer's public key only.
struct World {
    nats: TestNats,
    _db: FreshDatabase,
    issuer: Tokens,
    settings: Vec<String>,
}

impl World {
    async fn new() -> Self {
        let nats = TestNats::start().await.expect("nats");
        let db = FreshDatabase::create().await.expect("database");
        for schema in wharf_social::schemas() {
            wharf_runtime::db::migrate(&db.config, &schema)
                .await
                .expect("migrations");
        }
        let keys = KeySet::generate(KID);
        let public = URL_SAFE_NO_PAD.encode(keys.public_key(KID).expect("the generated key"));
        let issuer = Tokens::new(keys, TokenConfig::default());
        let settings = vec![
            format!("database.url={}", db.config.url),
            format!("nats.url={}", nats.url()),
            format!("events.namespace={NAMESPACE}"),
            "server.listen=127.0.0.1:0".to_owned(),
            "relay.poll_interval=200ms".to_owned(),
            format!("tokens.keys=[{{kid={KID},public_key={public}}}]"),
        ];
        Self {
            nats,
            _db: db,
            issuer,
            settings,
        }
    }

    /// `--set` arguments: the world's settings, then `extra` (later ones win).
    fn args(&self, extra: &[&str]) -> Vec<String> {
        self.args_without("", extra)
    }

    /// Like [`World::args`], leaving out the world's settings of key `without`.
    fn args_without(&self, without: &str, extra: &[&str]) -> Vec<String> {
        self.settings
            .iter()
            .map(String::as_str)
            .filter(|setting| without.is_empty() || !setting.starts_with(&format!("{without}=")))
            .chain(extra.iter().copied())
            .flat_map(|setting| ["--set".to_owned(), setting.to_owned()])
            .collect()
    }
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Serves on the port it reports, creates a registered user's profile and serves it, and
/// stops cleanly on SIGTERM.
#[tokio::test]
async fn it_serves_profiles_from_registrations_and_stops_cleanly() {
    let world = World::new().await;
    let mut service = Service::spawn(&world.args(&[]));
    let addr = service.address().await;

    let user_id = Uuid::now_v7().to_string();
    let event = UserRegistered {
        event_id: Uuid::now_v7().to_string(),
        occurred_at: Some(wharf_events::envelope::now()),
        user_id: user_id.clone(),
        email: "ada@example.com".to_owned(),
        handle: "ada".to_owned(),
        display_name: "Ada".to_owned(),
    };
    let js = jetstream::new(world.nats.client().await.unwrap());
    let (headers, payload) = wharf_events::envelope::encode(&event, None);
    js.publish_with_headers(
        format!("{NAMESPACE}.{}", UserRegistered::SUBJECT),
        headers,
        payload,
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut rpc = SocialServiceClient::new(channel);
    let token = world
        .issuer
        .issue(&user_id, "session", &["user".to_owned()])
        .unwrap()
        .0;
    let request = || {
        let mut request = Request::new(GetProfileRequest::default());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    // NOT_FOUND until the consumer has applied the registration.
    wait_until(WITHIN, "the profile", || {
        let mut rpc = rpc.clone();
        let request = request();
        async move { rpc.get_profile(request).await.is_ok() }
    })
    .await
    .unwrap();
    let profile = rpc
        .get_profile(request())
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(profile.handle, "ada");

    sigterm(&service.child);
    service.line_containing("stopped cleanly").await;
    let exit = tokio::time::timeout(WITHIN, service.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// Durable consumers created with one ack wait contradict a restart with another: the
/// background work cannot run, and the process exits with the reason instead of serving.
#[tokio::test]
async fn it_exits_with_the_reason_when_its_consumers_cannot_run() {
    let world = World::new().await;
    let mut first = Service::spawn(&world.args(&["social.consumer_ack_wait=3s"]));
    first.address().await;
    // The consumers are created when the background work starts, just after the address.
    let js = jetstream::new(world.nats.client().await.unwrap());
    let namespace = Namespace::new(NAMESPACE);
    wait_until(WITHIN, "the durable consumers", || {
        let js = js.clone();
        let stream = namespace.stream("TRADING");
        let durable = namespace.durable(wharf_social::ACHIEVEMENTS_CONSUMER);
        async move {
            match js.get_stream(stream).await {
                Ok(stream) => stream
                    .get_consumer::<jetstream::consumer::pull::Config>(&durable)
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
    .unwrap();
    sigterm(&first.child);
    tokio::time::timeout(WITHIN, first.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();

    let output = tokio::time::timeout(
        WITHIN,
        Command::new(env!("CARGO_BIN_EXE_social-service"))
            .args(world.args(&["social.consumer_ack_wait=7s"]))
            .output(),
    )
    .await
    .expect("exits by itself")
    .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("social-service listening on"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("consumer"), "{stderr}");
    assert!(stderr.contains("ack_wait"), "{stderr}");
}

/// Without token keys the service refuses to start, and says what to configure.
#[tokio::test]
async fn without_token_keys_it_refuses_to_start() {
    let world = World::new().await;
    let output = tokio::time::timeout(
        WITHIN,
        Command::new(env!("CARGO_BIN_EXE_social-service"))
            .args(world.args_without("tokens.keys", &[]))
            .output(),
    )
    .await
    .expect("exits")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no token keys are configured"), "{stderr}");
}
