//! The registration saga, social's side: every registration is answered, once per event, and a
//! registration seen again gets the same answer.

use wharf_proto::wharf::social::v1::{ProfileCreated, ProfileCreationFailed};

use crate::harness::{Harness, registered};

#[tokio::test]
async fn a_registration_creates_the_profile_and_answers_created() {
    let h = Harness::start().await;
    let event = registered("ada");
    h.publish(&event).await;

    let replies = h
        .wait_social_events::<ProfileCreated>("social.profile.created", 1)
        .await;
    assert_eq!(replies.len(), 1);
    let reply = &replies[0];
    assert_eq!(reply.user_id, event.user_id);
    assert_eq!(reply.handle, "ada");
    assert_eq!(reply.registration_event_id, event.event_id);
    assert_ne!(
        reply.event_id, event.event_id,
        "the reply is an event of its own"
    );

    let (handle, display_name, follower_count): (String, String, i64) = sqlx::query_as(
        "SELECT handle, display_name, follower_count FROM profiles WHERE user_id = $1",
    )
    .bind(&event.user_id)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        (handle.as_str(), display_name.as_str(), follower_count),
        ("ada", "ada display", 0)
    );
    assert!(h.failed_replies().await.is_empty());
}

#[tokio::test]
async fn a_taken_or_invalid_handle_answers_creation_failed_with_a_reason() {
    let h = Harness::start().await;
    let first = h.register("ada").await;

    let taken = registered("ada");
    h.publish(&taken).await;
    let invalid = registered("Not A Handle");
    h.publish(&invalid).await;

    let failures = h
        .wait_social_events::<ProfileCreationFailed>("social.profile.creation_failed", 2)
        .await;
    assert_eq!(failures.len(), 2);
    let of = |user_id: &str| {
        failures
            .iter()
            .find(|failure| failure.user_id == user_id)
            .unwrap_or_else(|| panic!("no failure for {user_id}"))
    };
    let reason = &of(&taken.user_id).reason;
    assert!(reason.contains("\"ada\" is already taken"), "{reason}");
    assert_eq!(of(&taken.user_id).registration_event_id, taken.event_id);
    let reason = &of(&invalid.user_id).reason;
    assert!(reason.contains("3 to 30 characters"), "{reason}");

    // Only the first user has a profile, and only they were answered `created`.
    assert_eq!(h.count("SELECT count(*) FROM profiles").await, 1);
    let created = h.created_replies().await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].user_id, first);
}

#[tokio::test]
async fn a_registration_seen_again_is_answered_created_again_with_no_second_profile() {
    let h = Harness::start().await;
    let original = registered("grace");
    h.publish(&original).await;
    h.wait_social_events::<ProfileCreated>("social.profile.created", 1)
        .await;

    // Auth's reconciliation re-emits the stuck registration under a new event id; the same
    // event is also redelivered (absorbed by the inbox, no second reply for it).
    let reemitted = wharf_proto::wharf::auth::v1::UserRegistered {
        event_id: uuid::Uuid::now_v7().to_string(),
        ..original.clone()
    };
    h.publish(&reemitted).await;
    h.publish_again(&original).await;
    h.wait_handled(&h.registration, 3).await;

    let created = h
        .wait_social_events::<ProfileCreated>("social.profile.created", 2)
        .await;
    assert_eq!(
        created.len(),
        2,
        "one reply per registration event: {created:?}"
    );
    let answered: Vec<&str> = created
        .iter()
        .map(|reply| reply.registration_event_id.as_str())
        .collect();
    assert!(answered.contains(&original.event_id.as_str()));
    assert!(answered.contains(&reemitted.event_id.as_str()));
    assert!(
        created
            .iter()
            .all(|reply| reply.user_id == original.user_id && reply.handle == "grace")
    );
    assert_eq!(h.registration.duplicates(), 1);
    assert_eq!(h.count("SELECT count(*) FROM profiles").await, 1);
    assert!(h.failed_replies().await.is_empty());
}

#[tokio::test]
async fn a_registration_that_can_never_apply_is_dead_lettered() {
    let h = Harness::start().await;
    let broken = wharf_proto::wharf::auth::v1::UserRegistered {
        user_id: String::new(),
        ..registered("nobody")
    };
    h.publish(&broken).await;
    h.wait_handled(&h.registration, 1).await;
    assert_eq!(h.registration.dead_lettered(), 1);
    assert_eq!(h.count("SELECT count(*) FROM profiles").await, 0);
}
