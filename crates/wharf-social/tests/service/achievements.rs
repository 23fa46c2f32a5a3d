//! Gamification: each achievement once per user, whatever the delivery order or duplicates,
//! announced after the commit on NATS (the fire-and-forget event and the notification).

use futures::StreamExt;
use prost::Message;
use wharf_proto::wharf::gateway::v1::Notification;
use wharf_proto::wharf::social::v1::{AchievementUnlocked, ListAchievementsRequest};
use wharf_testkit::wait_until;

use crate::harness::{Harness, WITHIN, redrive, trade};

const DAY: i64 = 86_400;
/// 2023-11-14T00:00:00Z, a UTC midnight.
const MIDNIGHT: i64 = 1_699_920_000;

#[tokio::test]
async fn achievements_unlock_once_each_under_duplicates_and_out_of_order_delivery() {
    let h = Harness::start().await;
    let gamer = h.register("gamer").await;
    let mut notifications = h
        .client
        .subscribe(format!("notify.user.{gamer}"))
        .await
        .unwrap();
    let mut unlocked_events = h
        .client
        .subscribe("social.achievement.unlocked")
        .await
        .unwrap();
    h.client.flush().await.unwrap();

    // Ten trades over three consecutive UTC days (late in the day and early the next count as
    // two days), one of them big, published newest first.
    let mut trades: Vec<_> = (0..10_i64)
        .map(|n| {
            let at = MIDNIGHT + (n % 3) * DAY + 3_600 * n;
            let notional = if n == 4 { 2_000_000 } else { 5_000 };
            trade(&gamer, notional, at)
        })
        .collect();
    trades.reverse();
    for event in &trades {
        h.publish(event).await;
    }
    // Duplicates of every kind: redelivered events and re-driven trades.
    for event in trades.iter().take(4) {
        h.publish_again(event).await;
        h.publish(&redrive(event)).await;
    }
    h.wait_handled(&h.achievements, 18).await;

    let held: Vec<(String, i64)> = sqlx::query_as(
        "SELECT achievement, count(*) FROM achievements WHERE user_id = $1 \
         GROUP BY achievement ORDER BY achievement",
    )
    .bind(&gamer)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        held,
        [
            ("big_trade".to_owned(), 1),
            ("first_trade".to_owned(), 1),
            ("ten_trades".to_owned(), 1),
            ("three_day_streak".to_owned(), 1)
        ]
    );
    assert_eq!(
        h.count("SELECT count(*) FROM user_trades").await,
        10,
        "each trade counted once"
    );

    // Announced on NATS: one event and one notification per achievement.
    let mut events = Vec::new();
    while events.len() < 4 {
        let message = tokio::time::timeout(WITHIN, unlocked_events.next())
            .await
            .expect("achievement events in time")
            .expect("subscription open");
        events.push(AchievementUnlocked::decode(message.payload.as_ref()).unwrap());
    }
    let mut names: Vec<&str> = events.iter().map(|e| e.achievement.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["big_trade", "first_trade", "ten_trades", "three_day_streak"]
    );
    assert!(
        events
            .iter()
            .all(|e| e.user_id == gamer && !e.event_id.is_empty())
    );

    let mut received = Vec::new();
    while received.len() < 4 {
        let message = tokio::time::timeout(WITHIN, notifications.next())
            .await
            .expect("notifications in time")
            .expect("subscription open");
        received.push(Notification::decode(message.payload.as_ref()).unwrap());
    }
    for notification in &received {
        assert_eq!(notification.user_id, gamer);
        assert_eq!(notification.kind, "achievement");
        assert!(notification.title.starts_with("Achievement unlocked: "));
        assert!(!notification.event_id.is_empty() && notification.occurred_at.is_some());
    }

    // The stream holds what was emitted: exactly one event per achievement.
    let stored = h
        .wait_social_events::<AchievementUnlocked>("social.achievement.unlocked", 4)
        .await;
    assert_eq!(stored.len(), 4);

    let listed = h
        .rpc()
        .await
        .list_achievements(h.as_user(&gamer, ListAchievementsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .achievements;
    assert_eq!(listed.len(), 4);
    assert!(
        listed
            .iter()
            .all(|a| !a.title.is_empty() && a.unlocked_at.is_some())
    );
}

#[tokio::test]
async fn a_broken_streak_and_a_small_trader_unlock_only_what_they_earned() {
    let h = Harness::start().await;
    // Days 0, 1 and 3: the longest run is two days.
    let user = "01a1ff5c-0000-7000-8000-000000000001";
    for day in [3, 0, 1] {
        h.publish(&trade(user, 100, MIDNIGHT + day * DAY + 60))
            .await;
    }
    h.wait_handled(&h.achievements, 3).await;
    wait_until(WITHIN, "first trade", || async {
        h.count("SELECT count(*) FROM achievements").await >= 1
    })
    .await
    .unwrap();
    let held: Vec<String> =
        sqlx::query_scalar("SELECT achievement FROM achievements WHERE user_id = $1")
            .bind(user)
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert_eq!(held, ["first_trade"]);

    // The missing day arrives late: the streak is now four days.
    h.publish(&trade(user, 100, MIDNIGHT + 2 * DAY)).await;
    h.wait_handled(&h.achievements, 4).await;
    let held: Vec<String> = sqlx::query_scalar(
        "SELECT achievement FROM achievements WHERE user_id = $1 ORDER BY achievement",
    )
    .bind(user)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(held, ["first_trade", "three_day_streak"]);
}
