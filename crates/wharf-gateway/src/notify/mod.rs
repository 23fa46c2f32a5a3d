//! Real-time notifications (ARCHITECTURE §4): every gateway instance receives every
//! notification and delivers it to the users connected to it.
//!
//! Notifications are published on `notify.user.<id>` (core NATS, fire-and-forget, e.g. by
//! social). The gateway keeps them in the JetStream stream `NOTIFY` for the retention window,
//! and reads that stream in order with one ephemeral ordered consumer per instance (no
//! competing consumer group, so every instance sees everything). Live delivery and replay
//! therefore share one order — the stream sequence — which is what makes a resume exact:
//!
//! 1. a subscriber is registered for live delivery first (its channel buffers);
//! 2. with a last event id, the user's retained notifications after that id are read from the
//!    stream (starting at the id's UUIDv7 time, less a clock-skew margin);
//! 3. live notifications are then passed on only if their sequence is past the last replayed.
//!
//! Nothing published after step 1 can be missed, and nothing is sent twice. A subscriber too
//! slow to keep up (its buffer full) is closed with a reconnect hint instead of slowing the
//! others; it resumes from its last event id. On shutdown every stream gets the hint too.
//!
//! # Layout
//! - [`grpc`] — `wharf.gateway.v1.Notifications/Subscribe`.
//! - [`sse`] — `GET /v1/events`, server-sent events.

pub mod grpc;
pub mod sse;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull, push};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use futures::StreamExt;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use wharf_events::Namespace;
use wharf_proto::wharf::gateway::v1::Notification;

use crate::config::NotificationsConfig;

/// The stream that keeps notifications for resuming clients.
pub const STREAM: &str = "NOTIFY";
/// How far before a last event id's own timestamp the replay starts looking (producer and
/// NATS clocks may differ).
const CLOCK_SKEW: Duration = Duration::from_secs(2);

/// One notification as the stream holds it.
#[derive(Debug)]
pub struct Delivered {
    pub sequence: u64,
    pub notification: Notification,
}

/// What a subscription yields.
#[derive(Debug, Clone)]
pub enum Item {
    Notification(Arc<Delivered>),
    /// The stream ends here; reconnect with the last event id after this delay.
    Reconnect(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot set up the {stream} stream: {reason}")]
    Stream { stream: String, reason: String },
    #[error("cannot read the {0} stream: {1}")]
    Consumer(String, #[source] async_nats::Error),
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("stream", &self.stream)
            .field("subscribers", &self.subscribers())
            .finish_non_exhaustive()
    }
}

type Registry = HashMap<String, Vec<(u64, mpsc::Sender<Arc<Delivered>>)>>;

/// Counters, for operators and the benchmark.
#[derive(Debug, Default)]
pub struct HubStats {
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    /// Subscribers closed because they could not keep up.
    pub slow_closed: AtomicU64,
    pub undecodable: AtomicU64,
}

/// The notification hub of one gateway instance.
pub struct Hub {
    js: Context,
    live: std::sync::Mutex<Option<push::Ordered>>,
    stream: String,
    subject_prefix: String,
    config: NotificationsConfig,
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    closing: CancellationToken,
    stats: HubStats,
}

impl Hub {
    /// Creates (or checks) the `NOTIFY` stream.
    pub async fn new(
        client: async_nats::Client,
        namespace: &Namespace,
        config: NotificationsConfig,
        closing: CancellationToken,
    ) -> Result<Self, HubError> {
        let js = jetstream::new(client.clone());
        let stream = namespace.stream(STREAM);
        let subjects = namespace.subject("notify.user.>");
        let declared = stream::Config {
            name: stream.clone(),
            subjects: vec![subjects.clone()],
            storage: StorageType::File,
            max_age: config.retention,
            discard: DiscardPolicy::Old,
            duplicate_window: Duration::from_secs(120).min(config.retention),
            ..Default::default()
        };
        let err = |reason: String| HubError::Stream {
            stream: stream.clone(),
            reason,
        };
        let info = js
            .get_or_create_stream(declared)
            .await
            .map_err(|e| err(e.to_string()))?
            .cached_info()
            .clone();
        if info.config.subjects != [subjects.clone()] {
            return Err(err(format!(
                "it captures {:?}, declared {:?}",
                info.config.subjects,
                [subjects]
            )));
        }
        if info.config.max_age < config.retention && !info.config.max_age.is_zero() {
            return Err(err(format!(
                "it keeps messages {:?}, shorter than gateway.notifications.retention {:?}",
                info.config.max_age, config.retention
            )));
        }
        let live = js
            .get_stream(&stream)
            .await
            .map_err(|e| HubError::Consumer(stream.clone(), e.into()))?
            .create_consumer(push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                filter_subject: namespace.subject("notify.user.>"),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| HubError::Consumer(stream.clone(), e.into()))?
            .messages()
            .await
            .map_err(|e| HubError::Consumer(stream.clone(), e.into()))?;
        Ok(Self {
            js,
            live: std::sync::Mutex::new(Some(live)),
            stream,
            subject_prefix: namespace.subject("notify.user."),
            config,
            registry: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closing,
            stats: HubStats::default(),
        })
    }

    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// Subscribers connected to this instance.
    pub fn subscribers(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        // Entries are pushed and removed whole: a poisoned lock is still consistent.
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the stream in order and hands each notification to this instance's subscribers,
    /// until `stop`. The ordered consumer (created by [`Hub::new`], so that nothing published
    /// once the gateway serves is missed) re-creates itself after NATS restarts, resuming after
    /// the last sequence it delivered.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), HubError> {
        let Some(mut messages) = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return Err(HubError::Consumer(
                self.stream.clone(),
                "the hub is already running".into(),
            ));
        };
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                message = messages.next() => message,
            };
            match message {
                Some(Ok(message)) => self.dispatch(&message),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "notification stream interrupted; the ordered consumer resumes by itself");
                }
                None => {
                    return Err(HubError::Consumer(
                        self.stream.clone(),
                        "the ordered consumer ended".into(),
                    ));
                }
            }
        }
    }

    fn decode(&self, message: &jetstream::Message) -> Option<Arc<Delivered>> {
        let sequence = message.info().ok()?.stream_sequence;
        match Notification::decode(message.payload.as_ref()) {
            Ok(notification) => Some(Arc::new(Delivered {
                sequence,
                notification,
            })),
            Err(err) => {
                self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subject = %message.subject, error = %err, "undecodable notification skipped");
                None
            }
        }
    }

    fn dispatch(&self, message: &jetstream::Message) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let Some(user) = message.subject.as_str().strip_prefix(&self.subject_prefix) else {
            return;
        };
        let mut slow = Vec::new();
        {
            let registry = self.read();
            let Some(subscribers) = registry.get(user) else {
                return;
            };
            let Some(delivered) = self.decode(message) else {
                return;
            };
            for (id, sender) in subscribers {
                match sender.try_send(Arc::clone(&delivered)) {
                    Ok(()) => {
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        for id in slow {
            self.stats.slow_closed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%user, "subscriber too slow; closing it with a reconnect hint");
            self.unregister(user, id);
        }
    }

    fn unregister(&self, user: &str, id: u64) {
        let mut registry = self.write();
        if let Some(subscribers) = registry.get_mut(user) {
            subscribers.retain(|(other, _)| *other != id);
            if subscribers.is_empty() {
                registry.remove(user);
            }
        }
    }

    /// Subscribes `user_id`, resuming after `last_event_id` when given.
    pub async fn subscribe(
        self: &Arc<Self>,
        user_id: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, Status> {
        let resume_from = last_event_id
            .map(|id| {
                uuid::Uuid::parse_str(id)
                    .ok()
                    .and_then(|uuid| uuid.get_timestamp())
                    .map(|ts| (id.to_owned(), ts.to_unix()))
                    .ok_or_else(|| {
                        Status::invalid_argument(
                            "last_event_id must be the event id of a notification",
                        )
                    })
            })
            .transpose()?;
        let (sender, receiver) = mpsc::channel(self.config.subscriber_buffer);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.write()
            .entry(user_id.to_owned())
            .or_default()
            .push((id, sender));
        let guard = Registration {
            hub: Arc::clone(self),
            user_id: user_id.to_owned(),
            id,
        };
        let (replay, truncated) = match resume_from {
            Some((last, (secs, nanos))) => self.replay(user_id, &last, secs, nanos).await?,
            None => (Vec::new(), false),
        };
        let after = replay.last().map_or(0, |d| d.sequence);
        Ok(Subscription {
            replay: replay.into_iter(),
            truncated,
            after,
            receiver,
            closing: self.closing.clone(),
            reconnect_after: self.config.reconnect_after,
            done: false,
            _guard: guard,
        })
    }

    /// The user's retained notifications after `last` (at most `replay_limit`; `truncated`
    /// says more were left for the next resume).
    async fn replay(
        &self,
        user_id: &str,
        last: &str,
        secs: u64,
        nanos: u32,
    ) -> Result<(Vec<Arc<Delivered>>, bool), Status> {
        let unavailable = |err: &dyn std::fmt::Display| {
            tracing::warn!(error = %err, "cannot replay notifications");
            Status::unavailable("notifications cannot be replayed right now; retry")
        };
        let since = UNIX_EPOCH + Duration::new(secs, nanos);
        let start = since.checked_sub(CLOCK_SKEW).unwrap_or(UNIX_EPOCH);
        let retained_from = SystemTime::now()
            .checked_sub(self.config.retention)
            .unwrap_or(UNIX_EPOCH);
        let start = start.max(retained_from);
        let start = time::OffsetDateTime::from(start);
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut consumer = stream
            .create_consumer(pull::Config {
                filter_subject: format!("{}{user_id}", self.subject_prefix),
                deliver_policy: DeliverPolicy::ByStartTime { start_time: start },
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        let pending = usize::try_from(
            consumer
                .info()
                .await
                .map_err(|e| unavailable(&e))?
                .num_pending,
        )
        .unwrap_or(usize::MAX);
        let name = consumer.cached_info().name.clone();
        let mut found = false;
        let mut after_last = Vec::new();
        let mut unmatched = Vec::new();
        let mut read = 0;
        while read < pending {
            let batch = consumer
                .fetch()
                .max_messages(pending - read)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| unavailable(&e))?;
            let messages: Vec<_> = batch.collect().await;
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let message = message.map_err(|e| unavailable(&e))?;
                read += 1;
                let published = message.info().map(|info| info.published).ok();
                let Some(delivered) = self.decode(&message) else {
                    continue;
                };
                if found {
                    after_last.push(delivered);
                } else if delivered.notification.event_id == last {
                    found = true;
                } else if published.is_some_and(|at| SystemTime::from(at) >= since) {
                    unmatched.push(delivered);
                }
            }
        }
        if let Err(err) = stream.delete_consumer(&name).await {
            tracing::debug!(error = %err, "replay consumer left to expire");
        }
        // The id was not retained (too old, or not this user's): everything since its time.
        let mut replay = if found { after_last } else { unmatched };
        let truncated = replay.len() > self.config.replay_limit;
        replay.truncate(self.config.replay_limit);
        Ok((replay, truncated))
    }
}

/// Removes a subscriber when its stream is dropped (client gone).
#[derive(Debug)]
struct Registration {
    hub: Arc<Hub>,
    user_id: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.user_id, self.id);
    }
}

/// One client's notifications: the replay, then live ones, then a reconnect hint.
#[derive(Debug)]
pub struct Subscription {
    replay: std::vec::IntoIter<Arc<Delivered>>,
    truncated: bool,
    after: u64,
    receiver: mpsc::Receiver<Arc<Delivered>>,
    closing: CancellationToken,
    reconnect_after: Duration,
    done: bool,
    _guard: Registration,
}

impl Subscription {
    /// The next item; `None` after the reconnect hint.
    pub async fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        if let Some(delivered) = self.replay.next() {
            return Some(Item::Notification(delivered));
        }
        if self.truncated {
            // More were missed than one replay sends: come back for the rest at once.
            self.done = true;
            return Some(Item::Reconnect(Duration::ZERO));
        }
        loop {
            let delivered = tokio::select! {
                biased;
                () = self.closing.cancelled() => None,
                delivered = self.receiver.recv() => delivered,
            };
            match delivered {
                Some(delivered) if delivered.sequence <= self.after => {}
                Some(delivered) => return Some(Item::Notification(delivered)),
                None => {
                    // Shutting down, or dropped as too slow.
                    self.done = true;
                    return Some(Item::Reconnect(self.reconnect_after));
                }
            }
        }
    }
}
