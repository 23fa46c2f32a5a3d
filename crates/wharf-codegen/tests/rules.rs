//! Each event rule, proven by compiling a small set of contracts that breaks it.

use std::path::Path;

use wharf_codegen::events::EventError;
use wharf_codegen::{CodegenError, Contracts, DeliveryClass, KeyKind};

const OPTIONS: &str = include_str!("../../../proto/wharf/options/v1/options.proto");

/// Writes the real options.proto plus `events` as `wharf/<domain>/v1/<file>` and compiles it.
fn compile(domain: &str, file: &str, body: &str) -> Result<Contracts, CodegenError> {
    let root = tempfile::tempdir().expect("tempdir");
    write(root.path(), "wharf/options/v1/options.proto", OPTIONS);
    let source = format!(
        "syntax = \"proto3\";\npackage wharf.{domain}.v1;\n\
         import \"google/protobuf/timestamp.proto\";\n\
         import \"wharf/options/v1/options.proto\";\n{body}"
    );
    write(root.path(), &format!("wharf/{domain}/v1/{file}"), &source);
    Contracts::compile(root.path())
}

fn write(root: &Path, relative: &str, contents: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, contents).expect("write");
}

fn event_error(result: Result<Contracts, CodegenError>) -> EventError {
    match result {
        Err(CodegenError::Event(err)) => err,
        Err(other) => panic!("expected an event rule violation, got: {other}"),
        Ok(_) => panic!("expected an event rule violation, the contracts compiled"),
    }
}

const ENVELOPE: &str = "string event_id = 1; google.protobuf.Timestamp occurred_at = 2;";

fn event(option: &str, fields: &str) -> String {
    format!(
        "message ThingHappened {{ option (wharf.options.v1.event) = {{ {option} }}; {fields} }}"
    )
}

/// A well-formed event is extracted with its class, subject, stream and key.
#[test]
fn valid_event_is_extracted() {
    let body = event(
        "delivery: DELIVERY_CLASS_OUTBOX subject: \"shop.thing.happened\" key_field: \"order_id\"",
        &format!("{ENVELOPE} string order_id = 3;"),
    );
    let contracts = compile("shop", "events.proto", &body).expect("compiles");
    let [spec] = contracts.events.as_slice() else {
        panic!("expected one event, got {:?}", contracts.events);
    };
    assert_eq!(spec.full_name, "wharf.shop.v1.ThingHappened");
    assert_eq!(spec.class, DeliveryClass::Outbox);
    assert_eq!(spec.subject, "shop.thing.happened");
    assert_eq!(spec.stream, "SHOP");
    assert_eq!(spec.key_kind, KeyKind::String);
}

/// A message in events.proto without the option fails the build, naming the message.
#[test]
fn event_without_option_fails() {
    let body = format!("message ThingHappened {{ {ENVELOPE} }}");
    let err = event_error(compile("shop", "events.proto", &body));
    assert!(
        matches!(err, EventError::MissingOption { ref message, .. } if message == "wharf.shop.v1.ThingHappened")
    );
    assert!(
        err.to_string()
            .contains("has no (wharf.options.v1.event) option"),
        "{err}"
    );
}

/// An event whose subject belongs to another domain's stream fails the build.
#[test]
fn subject_outside_package_stream_fails() {
    let body = event(
        "delivery: DELIVERY_CLASS_OUTBOX subject: \"trading.thing.happened\" key_field: \"event_id\"",
        ENVELOPE,
    );
    let err = event_error(compile("shop", "events.proto", &body));
    assert!(
        matches!(err, EventError::SubjectOutsideStream { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("outside its package's stream") && text.contains("\"shop.\""),
        "{text}"
    );
}

/// Wildcards and malformed tokens are refused: a subject is a literal address.
#[test]
fn malformed_subjects_fail() {
    for subject in [
        "shop.*.happened",
        "shop.>",
        "shop..x",
        "Shop.Thing",
        "shop",
        "",
    ] {
        let body = event(
            &format!(
                "delivery: DELIVERY_CLASS_OUTBOX subject: \"{subject}\" key_field: \"event_id\""
            ),
            ENVELOPE,
        );
        let err = event_error(compile("shop", "events.proto", &body));
        assert!(
            matches!(err, EventError::InvalidSubject { .. }),
            "{subject:?}: {err:?}"
        );
    }
}

/// The delivery class is mandatory.
#[test]
fn missing_delivery_class_fails() {
    let body = event(
        "subject: \"shop.thing.happened\" key_field: \"event_id\"",
        ENVELOPE,
    );
    let err = event_error(compile("shop", "events.proto", &body));
    assert!(matches!(err, EventError::MissingDelivery { .. }), "{err:?}");
}

/// The envelope (event_id, occurred_at) is mandatory and typed.
#[test]
fn missing_envelope_fails() {
    let option =
        "delivery: DELIVERY_CLASS_ACKED subject: \"shop.thing.happened\" key_field: \"id\"";
    let no_event_id = event(
        option,
        "string id = 1; google.protobuf.Timestamp occurred_at = 2;",
    );
    let err = event_error(compile("shop", "events.proto", &no_event_id));
    assert!(
        matches!(
            err,
            EventError::MissingEnvelopeField {
                field: "event_id",
                ..
            }
        ),
        "{err:?}"
    );

    let wrong_time = event(
        option,
        "string id = 1; string event_id = 2; int64 occurred_at = 3;",
    );
    let err = event_error(compile("shop", "events.proto", &wrong_time));
    assert!(
        matches!(
            err,
            EventError::MissingEnvelopeField {
                field: "occurred_at",
                ..
            }
        ),
        "{err:?}"
    );
}

/// The ordering key must exist and be a scalar string or integer.
#[test]
fn bad_key_field_fails() {
    let option = |key: &str| {
        format!(
            "delivery: DELIVERY_CLASS_FIRE_AND_FORGET subject: \"shop.thing.happened\" key_field: \"{key}\""
        )
    };
    for (key, fields) in [
        ("missing", ENVELOPE.to_owned()),
        ("tags", format!("{ENVELOPE} repeated string tags = 3;")),
        ("flag", format!("{ENVELOPE} bool flag = 3;")),
        ("", ENVELOPE.to_owned()),
    ] {
        let err = event_error(compile(
            "shop",
            "events.proto",
            &event(&option(key), &fields),
        ));
        assert!(
            matches!(err, EventError::InvalidKeyField { .. }),
            "{key:?}: {err:?}"
        );
    }
    let numeric = event(&option("seq"), &format!("{ENVELOPE} uint64 seq = 3;"));
    let contracts = compile("shop", "events.proto", &numeric).expect("integer keys are fine");
    assert_eq!(contracts.events[0].key_kind, KeyKind::Integer);
}

/// The option outside an events.proto is refused, so every event is found in one place.
#[test]
fn option_outside_events_file_fails() {
    let body = event(
        "delivery: DELIVERY_CLASS_OUTBOX subject: \"shop.thing.happened\" key_field: \"event_id\"",
        ENVELOPE,
    );
    let err = event_error(compile("shop", "service.proto", &body));
    assert!(
        matches!(err, EventError::OptionOutsideEventsFile { .. }),
        "{err:?}"
    );
}

/// Two events cannot share a subject: consumers decode by subject and full name.
#[test]
fn duplicate_subject_fails() {
    let option =
        "delivery: DELIVERY_CLASS_OUTBOX subject: \"shop.thing.happened\" key_field: \"event_id\"";
    let body = format!(
        "message A {{ option (wharf.options.v1.event) = {{ {option} }}; {ENVELOPE} }}\n\
         message B {{ option (wharf.options.v1.event) = {{ {option} }}; {ENVELOPE} }}"
    );
    let err = event_error(compile("shop", "events.proto", &body));
    assert!(
        matches!(err, EventError::DuplicateSubject { .. }),
        "{err:?}"
    );
}

/// The project's real contracts pass every rule and declare the events of ARCHITECTURE §4.
#[test]
fn project_contracts_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let contracts = Contracts::compile(&root).expect("the contracts compile");
    let subjects: Vec<_> = contracts
        .events
        .iter()
        .map(|e| (e.subject.as_str(), e.class))
        .collect();
    for expected in [
        ("auth.user.registered", DeliveryClass::Outbox),
        ("auth.user.logged_in", DeliveryClass::Acked),
        ("trading.trade.executed", DeliveryClass::Outbox),
        ("revenue.fee.recorded", DeliveryClass::Outbox),
        ("social.profile.created", DeliveryClass::Outbox),
        ("social.profile.creation_failed", DeliveryClass::Outbox),
        ("social.achievement.unlocked", DeliveryClass::FireAndForget),
    ] {
        assert!(
            subjects.contains(&expected),
            "missing {expected:?} in {subjects:?}"
        );
    }
    assert!(
        contracts
            .services
            .iter()
            .any(|s| s == "wharf.auth.v1.AuthService")
    );
}
