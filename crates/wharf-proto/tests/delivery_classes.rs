//! The delivery class of an event is part of its type: publishing APIs bound on the class
//! markers reject events of another class at compile time.

use wharf_proto::wharf::{auth, social, trading};
use wharf_proto::{AckedEvent, DeliveryClass, Event, FireAndForgetEvent, OutboxEvent};

fn outbox_only<E: OutboxEvent>(_: &E) -> DeliveryClass {
    E::CLASS
}

fn acked_only<E: AckedEvent>(_: &E) -> DeliveryClass {
    E::CLASS
}

fn fire_and_forget_only<E: FireAndForgetEvent>(_: &E) -> DeliveryClass {
    E::CLASS
}

/// Each event is accepted by its own class's API and carries its contract's metadata.
#[test]
fn events_carry_their_declared_class() {
    let trade = trading::v1::TradeExecuted {
        account_id: "acc-1".into(),
        ..Default::default()
    };
    assert_eq!(outbox_only(&trade), DeliveryClass::Outbox);
    assert_eq!(
        trading::v1::TradeExecuted::SUBJECT,
        "trading.trade.executed"
    );
    assert_eq!(trading::v1::TradeExecuted::STREAM, "TRADING");
    assert_eq!(trade.ordering_key(), "acc-1");

    assert_eq!(
        acked_only(&auth::v1::UserLoggedIn::default()),
        DeliveryClass::Acked
    );
    assert_eq!(
        fire_and_forget_only(&social::v1::AchievementUnlocked::default()),
        DeliveryClass::FireAndForget
    );
}

/// The envelope setter stamps the fields every event carries.
#[test]
fn envelope_is_stamped() {
    let mut event = auth::v1::UserRegistered::default();
    let at = prost_types::Timestamp {
        seconds: 1,
        nanos: 2,
    };
    event.set_envelope("0190-id".into(), at);
    assert_eq!(event.event_id(), "0190-id");
    assert_eq!(event.occurred_at(), Some(&at));
}

/// The table of events matches the trait impls.
#[test]
fn event_table_matches_impls() {
    let info = wharf_proto::event_info("wharf.revenue.v1.FeeRecorded").expect("listed");
    assert_eq!(info.subject, "revenue.fee.recorded");
    assert_eq!(info.class, DeliveryClass::Outbox);
    assert_eq!(wharf_proto::EVENTS.len(), 7);
}

/// Misuse across classes is a compile error, with the class named in the message.
#[test]
fn misuse_across_classes_does_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile_fail/*.rs");
}
