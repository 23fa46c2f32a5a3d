//! Wharf's contracts as Rust: every message and gRPC stub generated from `proto/`, the
//! descriptor set for server reflection, and the delivery class of every event as types.
//!
//! Each event message implements [`Event`] (its subject, stream, ordering key) and exactly one
//! marker trait for its class: [`OutboxEvent`], [`AckedEvent`] or [`FireAndForgetEvent`]. The
//! publishing APIs bound on the marker, so putting an auxiliary event in the outbox, or
//! publishing a critical event without the outbox, does not compile.
//!
//! # Layout
//! - `wharf::<domain>::v1`: generated messages, clients (`*_client`) and servers (`*_server`).
//! - [`Event`], the class markers, [`EVENTS`]: generated from the `(wharf.options.v1.event)`
//!   options by `wharf-codegen`.
//! - [`FILE_DESCRIPTOR_SET`]: every contract, with options, for reflection and decoding.
#![forbid(unsafe_code)]
// Generated code: its docs come from the .proto comments, not from us.
#![allow(clippy::all, missing_debug_implementations, rust_2018_idioms)]

use std::borrow::Cow;

include!(concat!(env!("OUT_DIR"), "/wharf_contracts.rs"));
include!(concat!(env!("OUT_DIR"), "/wharf_events.rs"));
include!(concat!(env!("OUT_DIR"), "/wharf_service_limits.rs"));

/// Every contract compiled into one encoded `FileDescriptorSet`, options included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/wharf_descriptor.bin"));

/// The guarantee a producer gives for an event (ARCHITECTURE §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryClass {
    /// Enqueued in the producer's PostgreSQL transaction; published by the relay; never lost.
    Outbox,
    /// Published synchronously; the caller awaits the JetStream ack and compensates on failure.
    Acked,
    /// Published without waiting; failures are counted, never returned. At-most-once.
    FireAndForget,
}

impl DeliveryClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbox => "outbox",
            Self::Acked => "acked",
            Self::FireAndForget => "fire_and_forget",
        }
    }
}

impl std::fmt::Display for DeliveryClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event message, as declared by its `(wharf.options.v1.event)` option.
///
/// Implemented only by generated code; the trait and every event type live in this crate, so
/// no other crate can add an impl (the orphan rule) and the class of an event is exactly the one
/// its contract declares.
pub trait Event: prost::Message + Default + Clone + 'static {
    /// Protobuf full name, e.g. `wharf.trading.v1.TradeExecuted`; sent as a header so consumers
    /// and `wharf dlq` can decode the payload.
    const FULL_NAME: &'static str;
    /// NATS subject the event is published to.
    const SUBJECT: &'static str;
    /// JetStream stream that captures the subject.
    const STREAM: &'static str;
    const CLASS: DeliveryClass;
    /// Name of the field whose value orders the event.
    const KEY_FIELD: &'static str;

    /// The UUIDv7 that identifies the event; also its `Nats-Msg-Id`.
    fn event_id(&self) -> &str;
    /// Stamps the envelope fields every event carries.
    fn set_envelope(&mut self, event_id: String, occurred_at: prost_types::Timestamp);
    fn occurred_at(&self) -> Option<&prost_types::Timestamp>;
    /// Events with the same key are delivered in commit order.
    fn ordering_key(&self) -> Cow<'_, str>;
}

/// A critical event: can only be enqueued through the transactional outbox.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an OUTBOX event",
    label = "only events declared `delivery: DELIVERY_CLASS_OUTBOX` go through the outbox",
    note = "the delivery class is declared by the event's (wharf.options.v1.event) option in its events.proto"
)]
pub trait OutboxEvent: Event {}

/// An event published synchronously with an awaited ack.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an ACKED event",
    label = "only events declared `delivery: DELIVERY_CLASS_ACKED` are published with an awaited ack",
    note = "the delivery class is declared by the event's (wharf.options.v1.event) option in its events.proto"
)]
pub trait AckedEvent: Event {}

/// An auxiliary event: best effort, at-most-once.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a FIRE_AND_FORGET event",
    label = "only events declared `delivery: DELIVERY_CLASS_FIRE_AND_FORGET` may be lost",
    note = "the delivery class is declared by the event's (wharf.options.v1.event) option in its events.proto"
)]
pub trait FireAndForgetEvent: Event {}

/// What the contracts say about one event, for code that handles events generically (stream
/// topology, `wharf dlq`, documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventInfo {
    pub full_name: &'static str,
    pub subject: &'static str,
    pub stream: &'static str,
    pub class: DeliveryClass,
    pub key_field: &'static str,
}

/// Looks up an event by its protobuf full name.
pub fn event_info(full_name: &str) -> Option<&'static EventInfo> {
    EVENTS.iter().find(|event| event.full_name == full_name)
}

/// Implemented for every generated gRPC server: applies message-size limits uniformly, so the
/// runtime's server builder can enforce the configured limits on any service it is given.
pub trait ServiceLimits {
    fn with_limits(
        self,
        max_decoding_message_size: usize,
        max_encoding_message_size: usize,
    ) -> Self;
}
