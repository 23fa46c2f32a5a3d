//! Extraction and validation of `(wharf.options.v1.event)`.
//!
//! The rules, each with its own error so the build output says exactly what to fix:
//! - every top-level message of a file named `events.proto` is an event and carries the option,
//!   and the option appears nowhere else;
//! - the delivery class is set;
//! - the subject is a literal NATS subject whose first token is the package's domain
//!   (`wharf.<domain>.v1` publishes only into the `<DOMAIN>` stream);
//! - the message has the envelope fields `string event_id` and
//!   `google.protobuf.Timestamp occurred_at`;
//! - `key_field` names a string or integer field of the message;
//! - no two events share a subject.

use std::collections::BTreeMap;

use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};

const EVENT_OPTION: &str = "wharf.options.v1.event";
const EVENTS_FILE: &str = "events.proto";

/// The delivery class of an event, as declared in its contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryClass {
    Outbox,
    Acked,
    FireAndForget,
}

impl DeliveryClass {
    /// The variant name in `wharf_proto::DeliveryClass`.
    pub fn variant(self) -> &'static str {
        match self {
            Self::Outbox => "Outbox",
            Self::Acked => "Acked",
            Self::FireAndForget => "FireAndForget",
        }
    }

    /// The marker trait generated code implements for this class.
    pub fn marker_trait(self) -> &'static str {
        match self {
            Self::Outbox => "OutboxEvent",
            Self::Acked => "AckedEvent",
            Self::FireAndForget => "FireAndForgetEvent",
        }
    }
}

/// How the ordering key is turned into a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    String,
    Integer,
}

/// One validated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// Protobuf full name, e.g. `wharf.trading.v1.TradeExecuted`.
    pub full_name: String,
    /// Package, e.g. `wharf.trading.v1`.
    pub package: String,
    /// Message name, e.g. `TradeExecuted`.
    pub name: String,
    pub class: DeliveryClass,
    pub subject: String,
    /// JetStream stream the subject belongs to, e.g. `TRADING`.
    pub stream: String,
    pub key_field: String,
    pub key_kind: KeyKind,
}

/// A contract that breaks one of the event rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error(
        "{message} in {file} has no (wharf.options.v1.event) option: every message of an \
         events.proto is an event and must declare its delivery class, subject and key_field"
    )]
    MissingOption { message: String, file: String },
    #[error(
        "{message} in {file} declares (wharf.options.v1.event) but events live in events.proto: \
         move it there"
    )]
    OptionOutsideEventsFile { message: String, file: String },
    #[error(
        "{message} has no delivery class: set `delivery` to DELIVERY_CLASS_OUTBOX, \
         DELIVERY_CLASS_ACKED or DELIVERY_CLASS_FIRE_AND_FORGET"
    )]
    MissingDelivery { message: String },
    #[error("{message} has an invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        message: String,
        subject: String,
        reason: &'static str,
    },
    #[error(
        "{message} publishes to subject {subject:?}, outside its package's stream: events of \
         package {package} must use subjects starting with \"{prefix}.\" (stream {stream})"
    )]
    SubjectOutsideStream {
        message: String,
        subject: String,
        package: String,
        prefix: String,
        stream: String,
    },
    #[error("{message} is in package {package}, which is not of the form wharf.<domain>.v<N>")]
    InvalidPackage { message: String, package: String },
    #[error("{message} lacks the envelope field `{field}` ({expected})")]
    MissingEnvelopeField {
        message: String,
        field: &'static str,
        expected: &'static str,
    },
    #[error("{message} declares key_field {field:?}, but {reason}")]
    InvalidKeyField {
        message: String,
        field: String,
        reason: &'static str,
    },
    #[error("{first} and {second} both publish to subject {subject:?}")]
    DuplicateSubject {
        subject: String,
        first: String,
        second: String,
    },
}

/// Returns every event in the pool, or the first rule it breaks.
pub fn extract(pool: &DescriptorPool) -> Result<Vec<EventSpec>, EventError> {
    // The option is only known once options.proto is part of the pool; a set of contracts
    // without it simply has no events, unless an events.proto exists.
    let extension = pool.get_extension_by_name(EVENT_OPTION);
    let mut events = Vec::new();
    let mut subjects: BTreeMap<String, String> = BTreeMap::new();

    for file in pool.files() {
        let in_events_file = file.name().rsplit('/').next() == Some(EVENTS_FILE);
        for message in file.messages() {
            let option = extension.as_ref().and_then(|ext| {
                let options = message.options();
                options
                    .has_extension(ext)
                    .then(|| options.get_extension(ext).into_owned())
            });
            let spec = match (option, in_events_file) {
                (None, false) => continue,
                (None, true) => {
                    return Err(EventError::MissingOption {
                        message: message.full_name().to_owned(),
                        file: file.name().to_owned(),
                    });
                }
                (Some(_), false) => {
                    return Err(EventError::OptionOutsideEventsFile {
                        message: message.full_name().to_owned(),
                        file: file.name().to_owned(),
                    });
                }
                (Some(value), true) => validate(&message, &value)?,
            };
            if let Some(first) = subjects.insert(spec.subject.clone(), spec.full_name.clone()) {
                return Err(EventError::DuplicateSubject {
                    subject: spec.subject,
                    first,
                    second: message.full_name().to_owned(),
                });
            }
            events.push(spec);
        }
    }
    events.sort_by(|a, b| a.full_name.cmp(&b.full_name));
    Ok(events)
}

fn validate(message: &MessageDescriptor, option: &Value) -> Result<EventSpec, EventError> {
    let name = message.full_name().to_owned();
    let Some(option) = option.as_message() else {
        return Err(EventError::MissingDelivery { message: name });
    };

    let class = match option.get_field_by_name("delivery").as_deref() {
        Some(Value::EnumNumber(1)) => DeliveryClass::Outbox,
        Some(Value::EnumNumber(2)) => DeliveryClass::Acked,
        Some(Value::EnumNumber(3)) => DeliveryClass::FireAndForget,
        _ => return Err(EventError::MissingDelivery { message: name }),
    };
    let subject = string_field(option, "subject");
    let key_field = string_field(option, "key_field");

    let package = message.package_name().to_owned();
    let domain = domain_of(&package)
        .ok_or_else(|| EventError::InvalidPackage {
            message: name.clone(),
            package: package.clone(),
        })?
        .to_owned();
    check_subject(&name, &subject)?;
    let stream = domain.to_ascii_uppercase();
    if subject.split('.').next() != Some(domain.as_str()) {
        return Err(EventError::SubjectOutsideStream {
            message: name,
            subject,
            package,
            prefix: domain,
            stream,
        });
    }

    check_envelope(message)?;
    let key_kind = key_kind(message, &key_field)?;

    Ok(EventSpec {
        full_name: name,
        package,
        name: message.name().to_owned(),
        class,
        subject,
        stream,
        key_field,
        key_kind,
    })
}

fn string_field(message: &DynamicMessage, field: &str) -> String {
    match message.get_field_by_name(field).as_deref() {
        Some(Value::String(value)) => value.clone(),
        _ => String::new(),
    }
}

/// `wharf.trading.v1` → `trading`.
fn domain_of(package: &str) -> Option<&str> {
    let mut parts = package.split('.');
    let (Some("wharf"), Some(domain), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let versioned = version
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    (versioned && !domain.is_empty()).then_some(domain)
}

fn check_subject(message: &str, subject: &str) -> Result<(), EventError> {
    let invalid = |reason| EventError::InvalidSubject {
        message: message.to_owned(),
        subject: subject.to_owned(),
        reason,
    };
    if subject.is_empty() {
        return Err(invalid("it is empty"));
    }
    if subject.contains(['*', '>']) {
        return Err(invalid("wildcards are not allowed in an event's subject"));
    }
    let tokens_ok = subject.split('.').all(|token| {
        !token.is_empty()
            && token
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    if !tokens_ok {
        return Err(invalid(
            "use dot-separated tokens of lowercase letters, digits and underscores",
        ));
    }
    if subject.split('.').count() < 2 {
        return Err(invalid("it needs at least a domain and an event name"));
    }
    Ok(())
}

fn check_envelope(message: &MessageDescriptor) -> Result<(), EventError> {
    let missing = |field, expected| EventError::MissingEnvelopeField {
        message: message.full_name().to_owned(),
        field,
        expected,
    };
    match message.get_field_by_name("event_id") {
        Some(field) if field.kind() == Kind::String && !field.is_list() => {}
        _ => return Err(missing("event_id", "string event_id, a UUIDv7")),
    }
    match message.get_field_by_name("occurred_at") {
        Some(field)
            if matches!(field.kind(), Kind::Message(ref m) if m.full_name() == "google.protobuf.Timestamp")
                && !field.is_list() => {}
        _ => {
            return Err(missing(
                "occurred_at",
                "google.protobuf.Timestamp occurred_at",
            ));
        }
    }
    Ok(())
}

fn key_kind(message: &MessageDescriptor, key_field: &str) -> Result<KeyKind, EventError> {
    let invalid = |reason| EventError::InvalidKeyField {
        message: message.full_name().to_owned(),
        field: key_field.to_owned(),
        reason,
    };
    if key_field.is_empty() {
        return Err(invalid("it is empty: name the field that orders the event"));
    }
    let field = message
        .get_field_by_name(key_field)
        .ok_or_else(|| invalid("the message has no such field"))?;
    if field.is_list() || field.is_map() {
        return Err(invalid("a repeated or map field cannot order events"));
    }
    match field.kind() {
        Kind::String => Ok(KeyKind::String),
        Kind::Int32
        | Kind::Int64
        | Kind::Uint32
        | Kind::Uint64
        | Kind::Sint32
        | Kind::Sint64
        | Kind::Fixed32
        | Kind::Fixed64
        | Kind::Sfixed32
        | Kind::Sfixed64 => Ok(KeyKind::Integer),
        _ => Err(invalid("only string and integer fields can order events")),
    }
}
