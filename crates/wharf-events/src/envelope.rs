//! The envelope: how an event travels as a NATS message.
//!
//! Payload: the protobuf encoding of the event. Headers:
//! - `Nats-Msg-Id`: the event id, so JetStream stores a re-published event once (within the
//!   stream's duplicate window);
//! - `Wharf-Event-Type`: the protobuf full name, so `wharf dlq` and generic tools can decode it;
//! - `Wharf-Event-Id`: the event id again (a replayed dead letter gets a new `Nats-Msg-Id`);
//! - `Wharf-Key`: the ordering key;
//! - `traceparent`: the W3C trace context of the producer, so one trace spans commit → relay →
//!   consumer → effect;
//! - `Content-Type: application/x-protobuf`.

use async_nats::HeaderMap;
use bytes::Bytes;
use wharf_proto::Event;

pub const MSG_ID: &str = "Nats-Msg-Id";
pub const EVENT_TYPE: &str = "Wharf-Event-Type";
pub const EVENT_ID: &str = "Wharf-Event-Id";
pub const KEY: &str = "Wharf-Key";
pub const TRACEPARENT: &str = "traceparent";
pub const CONTENT_TYPE: &str = "Content-Type";
pub const PROTOBUF: &str = "application/x-protobuf";

/// What the headers say about an event, independent of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub event_id: String,
    pub event_type: String,
    pub key: String,
    pub traceparent: Option<String>,
}

impl Envelope {
    /// The envelope of a typed event.
    pub fn of<E: Event>(event: &E, traceparent: Option<String>) -> Self {
        Self {
            event_id: event.event_id().to_owned(),
            event_type: E::FULL_NAME.to_owned(),
            key: event.ordering_key().into_owned(),
            traceparent,
        }
    }

    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID, self.event_id.as_str());
        headers.insert(EVENT_ID, self.event_id.as_str());
        headers.insert(EVENT_TYPE, self.event_type.as_str());
        headers.insert(KEY, self.key.as_str());
        headers.insert(CONTENT_TYPE, PROTOBUF);
        if let Some(traceparent) = &self.traceparent {
            headers.insert(TRACEPARENT, traceparent.as_str());
        }
        headers
    }

    /// Reads the envelope back; `None` when a required header is missing.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let get = |name: &str| headers.get(name).map(|value| value.as_str().to_owned());
        Some(Self {
            event_id: get(EVENT_ID).or_else(|| get(MSG_ID))?,
            event_type: get(EVENT_TYPE)?,
            key: get(KEY).unwrap_or_default(),
            traceparent: get(TRACEPARENT),
        })
    }
}

/// A new event id: UUIDv7, time-ordered, so ids sort roughly by creation.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Now as a protobuf timestamp.
pub fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

/// Fills in `event_id` and `occurred_at` when the producer left them empty.
pub fn stamp<E: Event>(event: &mut E) {
    if event.event_id().is_empty() || event.occurred_at().is_none() {
        let id = if event.event_id().is_empty() {
            new_event_id()
        } else {
            event.event_id().to_owned()
        };
        let at = event.occurred_at().copied().unwrap_or_else(now);
        event.set_envelope(id, at);
    }
}

/// The headers and payload of `event`, ready to publish.
pub fn encode<E: Event>(event: &E, traceparent: Option<String>) -> (HeaderMap, Bytes) {
    let headers = Envelope::of(event, traceparent).headers();
    (headers, Bytes::from(event.encode_to_vec()))
}

/// Why a message could not be read as the expected event. Such a message can never succeed,
/// so the consumer dead-letters it at once.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message has no Wharf envelope headers")]
    MissingEnvelope,
    #[error("message carries a {found} but this consumer expects {expected}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("payload is not a valid {event_type}: {reason}")]
    Payload {
        event_type: &'static str,
        reason: String,
    },
}

/// Decodes a message into `E`, checking the declared type first.
pub fn decode<E: Event>(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<(Envelope, E), DecodeError> {
    let envelope = headers
        .and_then(Envelope::from_headers)
        .ok_or(DecodeError::MissingEnvelope)?;
    if envelope.event_type != E::FULL_NAME {
        return Err(DecodeError::WrongType {
            expected: E::FULL_NAME,
            found: envelope.event_type,
        });
    }
    let event = E::decode(payload).map_err(|err| DecodeError::Payload {
        event_type: E::FULL_NAME,
        reason: err.to_string(),
    })?;
    Ok((envelope, event))
}
