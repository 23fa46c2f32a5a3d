//! L1: how fast this machine's JetStream stores the relay's messages when nothing else is in
//! the way — pipelined publishes of the relay's payload and headers, acks awaited with up to
//! W in flight, best of several W. L1s: one publish at a time, the ack awaited (the relay's
//! floor per batch, and the `ACKED` publisher's cost).

use std::future::IntoFuture;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishAckFuture;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::progress;
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::results::{Percentiles, PublishLimit, Throughput, WindowRun, micros_histogram};
use crate::workload;

/// `count` messages as the relay would send them, each with a fresh event id.
pub fn messages(count: u64) -> Vec<(HeaderMap, Bytes)> {
    let now = SystemTime::now();
    (0..count)
        .map(|seq| workload::message(&workload::trade(seq, now)))
        .collect()
}

/// A JetStream context allowing `window` acks in flight.
pub fn context(client: &async_nats::Client, window: usize) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .max_ack_inflight(window.max(1))
        .backpressure_on_inflight(true)
        .build(client.clone())
}

/// Publishes every message, keeping up to `window` acks in flight (a sliding window: the next
/// publish goes out as soon as any ack is back). Fails on the first failed publish.
pub async fn pipelined(
    js: &jetstream::Context,
    subject: &str,
    messages: Vec<(HeaderMap, Bytes)>,
    window: usize,
) -> anyhow::Result<Throughput> {
    let count = messages.len() as u64;
    let mut in_flight = FuturesUnordered::<<PublishAckFuture as IntoFuture>::IntoFuture>::new();
    let start = Instant::now();
    for (headers, payload) in messages {
        if in_flight.len() >= window.max(1)
            && let Some(acked) = in_flight.next().await
        {
            acked.context("publish was not acknowledged")?;
        }
        let ack = js
            .publish_with_headers(subject.to_owned(), headers, payload)
            .await
            .context("failed to send a publish")?;
        in_flight.push(ack.into_future());
    }
    while let Some(acked) = in_flight.next().await {
        acked.context("publish was not acknowledged")?;
    }
    Ok(Throughput::new(count, start.elapsed()))
}

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<PublishLimit> {
    let topology = env.topology("l1").await?;
    let subject = workload::subject(&topology.namespace);
    let sample = messages(1).pop().expect("one message");
    let payload_bytes = sample.1.len();
    let header_bytes = header_len(&sample.0);

    // A short warm-up, so the first window does not pay for connection and file start-up.
    let warm = context(&env.client, 256);
    pipelined(&warm, &subject, messages(params.events.min(2_000)), 256).await?;

    let mut windows = Vec::new();
    for &window in &params.windows {
        let batch = messages(params.events);
        let js = context(&env.client, window);
        let throughput = pipelined(&js, &subject, batch, window)
            .await
            .with_context(|| format!("L1 with window {window} failed"))?;
        progress(&format!(
            "L1 window {window}: {:.0} msg/s",
            throughput.per_second
        ));
        windows.push(WindowRun { window, throughput });
    }
    let best = windows
        .iter()
        .copied()
        .max_by(|a, b| a.throughput.per_second.total_cmp(&b.throughput.per_second))
        .context("no L1 window was run")?;

    let sync_ack = sync_latency(&context(&env.client, 1), &subject, params.sync_samples).await?;
    progress(&format!(
        "L1s sync ack: p50 {:.2} ms, p99 {:.2} ms",
        sync_ack.p50_ms, sync_ack.p99_ms
    ));
    Ok(PublishLimit {
        windows,
        best_window: best.window,
        best: best.throughput,
        payload_bytes,
        header_bytes,
        sync_ack,
    })
}

/// L1s: publish, await the ack, repeat.
async fn sync_latency(
    js: &jetstream::Context,
    subject: &str,
    samples: u64,
) -> anyhow::Result<Percentiles> {
    let mut histogram = micros_histogram();
    for (headers, payload) in messages(samples) {
        let start = Instant::now();
        js.publish_with_headers(subject.to_owned(), headers, payload)
            .await
            .context("failed to send a publish")?
            .await
            .context("sync publish was not acknowledged")?;
        histogram.saturating_record(start.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
    }
    Ok(Percentiles::from_micros(&histogram))
}

/// Header bytes on the wire (`NATS/1.0\r\n`, `Name: value\r\n` each, the final `\r\n`).
fn header_len(headers: &HeaderMap) -> usize {
    let fields: usize = headers
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| AsRef::<str>::as_ref(name).len() + value.as_str().len() + 4)
        })
        .sum();
    "NATS/1.0\r\n".len() + fields + 2
}
