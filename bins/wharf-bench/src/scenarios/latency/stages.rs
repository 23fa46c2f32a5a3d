//! Where events wait during the latency run: every 100 ms, how many events were due, how many
//! the producer has committed, the relay published and the consumer applied. The gaps between
//! the counts are the queues in front of the producer's commit, the relay and the consumer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wharf_events::consumer::ConsumerStats;
use wharf_outbox::RelayStats;

use super::clock::Clock;
use super::producer::Schedule;
use crate::results::StageSample;

/// The counters the sampler reads.
#[derive(Debug)]
pub struct Stages {
    pub clock: Arc<Clock>,
    pub relay: Arc<RelayStats>,
    pub consumer: Arc<ConsumerStats>,
    /// The timed schedule; the counters also include the `first_seq` warm-up events.
    pub schedule: Schedule,
}

impl Stages {
    fn sample(&self, start: Instant) -> StageSample {
        let t_s = start.elapsed().as_secs_f64();
        // Event i is due at i / rate, so by t events 0..=floor(t × rate) are.
        let due_timed =
            ((t_s * f64::from(self.schedule.rate)).floor() as u64 + 1).min(self.schedule.total);
        StageSample {
            t_s,
            due: self.schedule.first_seq + due_timed,
            committed: self.clock.produced_total(),
            published: self.relay.published(),
            applied: self.consumer.applied(),
        }
    }

    /// Samples from `start` until `stop` (or an hour, whichever is first).
    pub fn record(self, start: Instant, stop: CancellationToken) -> JoinHandle<Vec<StageSample>> {
        tokio::spawn(async move {
            let mut samples = vec![self.sample(start)];
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while start.elapsed() < Duration::from_secs(3600) {
                tokio::select! {
                    _ = tick.tick() => samples.push(self.sample(start)),
                    () = stop.cancelled() => break,
                }
            }
            samples.push(self.sample(start));
            samples
        })
    }
}
