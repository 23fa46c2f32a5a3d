//! User notifications on core NATS (ARCHITECTURE §4, real-time notifications).
//!
//! A `wharf.gateway.v1.Notification` for user `U` goes to subject `notify.user.U` (under the
//! namespace prefix), where every gateway instance receives it. Plain NATS publishes, no
//! stream: like the `FIRE_AND_FORGET` events, a notification is queued without waiting, and
//! what does not fit the queue (NATS slow or down) is dropped and counted, never awaited.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::HeaderMap;
use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;
use wharf_events::Namespace;
use wharf_events::envelope::{CONTENT_TYPE, EVENT_ID, EVENT_TYPE, PROTOBUF};
use wharf_proto::wharf::gateway::v1::Notification;

/// The protobuf full name of a notification, sent as its `Wharf-Event-Type` header.
pub const NOTIFICATION_TYPE: &str = "wharf.gateway.v1.Notification";

/// The subject of a user's notifications, without the namespace prefix.
pub fn subject(user_id: &str) -> String {
    format!("notify.user.{user_id}")
}

/// Whether `user_id` can be one token of a subject (no `.`, wildcard or whitespace).
fn subject_safe(user_id: &str) -> bool {
    !user_id.is_empty()
        && !user_id
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control())
}

/// Counters of the notifier.
#[derive(Debug, Default)]
pub struct NotifierStats {
    queued: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl NotifierStats {
    /// Notifications handed to the sender.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Notifications dropped: the queue was full, or the user id cannot be a subject token.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Notifications the client failed to send.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

type Outgoing = (String, HeaderMap, Bytes);

/// Publishes notifications on core NATS without ever blocking the caller.
#[derive(Debug, Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Outgoing>,
    namespace: Namespace,
    stats: Arc<NotifierStats>,
}

impl Notifier {
    /// Starts the background sender with a queue of `capacity` notifications. Needs a Tokio
    /// runtime.
    pub fn start(client: async_nats::Client, namespace: Namespace, capacity: usize) -> Self {
        let (queue, mut outgoing) = mpsc::channel::<Outgoing>(capacity.max(1));
        let stats = Arc::new(NotifierStats::default());
        let worker_stats = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Some((subject, headers, payload)) = outgoing.recv().await {
                if let Err(err) = client
                    .publish_with_headers(subject.clone(), headers, payload)
                    .await
                {
                    worker_stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%subject, error = %err, "notification publish failed");
                }
            }
        });
        Self {
            queue,
            namespace,
            stats,
        }
    }

    /// Queues `notification` for its user; returns at once whatever happens to it.
    pub fn notify(&self, notification: &Notification) {
        if !subject_safe(&notification.user_id) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(user_id = %notification.user_id, "user id cannot be a subject; notification dropped");
            return;
        }
        let subject = self.namespace.subject(&subject(&notification.user_id));
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_ID, notification.event_id.as_str());
        headers.insert(EVENT_TYPE, NOTIFICATION_TYPE);
        headers.insert(CONTENT_TYPE, PROTOBUF);
        let payload = Bytes::from(notification.encode_to_vec());
        if self.queue.try_send((subject, headers, payload)).is_ok() {
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("notification queue full; notification dropped");
        }
    }

    pub fn stats(&self) -> &NotifierStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_tokens_become_subjects() {
        assert_eq!(subject("u-1"), "notify.user.u-1");
        assert!(subject_safe("01a1ff5c-a0ed-772e-9502-cbe1507a7d92"));
        for bad in ["", "a.b", "*", ">", "a b"] {
            assert!(!subject_safe(bad), "{bad:?}");
        }
    }
}
