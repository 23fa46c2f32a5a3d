//! The testkit's servers really die and really come back with their data: the faults other
//! tests inject are only as good as these.

use std::time::Duration;

use sqlx::Connection;
use wharf_testkit::{TestNats, TestPostgres, TestRedis};

/// A JetStream message stored before a SIGKILL is there after the restart (file storage,
/// `sync_interval: always`), on the same port.
#[tokio::test]
async fn nats_keeps_jetstream_data_across_kill9() {
    let mut nats = TestNats::start().await.unwrap();
    let js = async_nats::jetstream::new(nats.client().await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KEEP".into(),
        subjects: vec!["keep.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("keep.one", "payload".into())
        .await
        .unwrap()
        .await
        .unwrap();

    nats.kill9();
    assert!(
        async_nats::connect(nats.url()).await.is_err(),
        "the server is really gone"
    );
    nats.restart().await.unwrap();

    let js = async_nats::jetstream::new(nats.client().await.unwrap());
    let mut stream = js.get_stream("KEEP").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

/// A Redis write acknowledged before a SIGKILL survives it with the shipped config
/// (`appendonly yes`).
#[tokio::test]
async fn redis_keeps_acknowledged_writes_across_kill9() {
    let mut redis = TestRedis::start().await.unwrap();
    assert_eq!(
        redis_cli(redis.port, &["SET", "revoked:session-1", "1"]),
        "OK"
    );
    redis.kill9();
    redis.restart().await.unwrap();
    assert_eq!(redis_cli(redis.port, &["GET", "revoked:session-1"]), "1");
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A committed PostgreSQL row survives a SIGKILL of the postmaster; a stopped server refuses
/// connections until restarted.
#[tokio::test]
async fn postgres_keeps_commits_across_kill9_and_stop() {
    let mut postgres = TestPostgres::start().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&postgres.url()).await.unwrap();
    sqlx::query("CREATE TABLE kept (id INT PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    postgres.kill9();
    postgres.restart().await.unwrap();
    postgres.stop();
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect(&postgres.url()),
    )
    .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a stopped server refuses connections"
    );
    postgres.restart().await.unwrap();

    let mut conn = sqlx::PgConnection::connect(&postgres.url()).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 1);
}
