//! Trades into followers' feeds: once per follower, whatever the delivery does.

use wharf_proto::wharf::social::v1::{GetFeedRequest, UnfollowRequest};
use wharf_testkit::wait_until;

use crate::harness::{Harness, WITHIN, redrive, trade};

#[tokio::test]
async fn a_trade_reaches_every_follower_once_under_duplicates_and_redrives() {
    let h = Harness::start().await;
    let trader = h.register("trader").await;
    let bystander = h.register("bystander").await;
    let mut followers = Vec::new();
    for n in 0..5 {
        let follower = h.register(&format!("fan_{n}")).await;
        h.follow(&follower, &trader).await;
        followers.push(follower);
    }

    let event = trade(&trader, 125_000, 1_700_000_000);
    h.publish(&event).await;
    // The same event delivered again, and the same trade re-driven under a new event id.
    h.publish_again(&event).await;
    h.publish(&redrive(&event)).await;
    h.wait_handled(&h.feed, 3).await;

    assert_eq!(
        h.feed.duplicates(),
        1,
        "the redelivery is absorbed by the inbox"
    );
    for follower in &followers {
        let rows = h.feed_rows(follower).await;
        assert_eq!(rows.len(), 1, "{follower}: {rows:?}");
        assert_eq!(rows[0].0.to_string(), event.trade_id);
        assert_eq!(rows[0].1, trader);
    }
    assert!(h.feed_rows(&bystander).await.is_empty());
    assert!(
        h.feed_rows(&trader).await.is_empty(),
        "no one follows themselves"
    );
    assert_eq!(h.count("SELECT count(*) FROM feed_items").await, 5);

    // What a follower reads.
    let feed = h
        .rpc()
        .await
        .get_feed(h.as_user(&followers[0], GetFeedRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(feed.items.len(), 1);
    let item = &feed.items[0];
    assert_eq!(item.kind, "trade");
    assert_eq!(item.text, "bought 10 WHRF");
    assert_eq!(item.trade_id, event.trade_id);
    assert_eq!(item.actor_user_id, trader);
    assert_eq!(item.occurred_at.unwrap().seconds, 1_700_000_000);
    assert!(!item.feed_item_id.is_empty());
}

/// A re-driven trade (already fanned out, so it takes the `ON CONFLICT` path instead of the
/// first fan-out's plain insert) reaches only those who followed the trader since; everyone
/// keeps exactly one item, and the trade has one `feed_trades` row.
#[tokio::test]
async fn a_redriven_trade_reaches_only_new_followers() {
    let h = Harness::start().await;
    let trader = h.register("trader").await;
    let early = h.register("early").await;
    let late = h.register("late").await;
    h.follow(&early, &trader).await;

    let event = trade(&trader, 1_000, 1_700_000_000);
    h.publish(&event).await;
    h.wait_handled(&h.feed, 1).await;
    assert_eq!(h.feed_rows(&early).await.len(), 1);
    assert!(h.feed_rows(&late).await.is_empty(), "not yet a follower");

    h.follow(&late, &trader).await;
    h.publish(&redrive(&event)).await;
    h.wait_handled(&h.feed, 2).await;

    for follower in [&early, &late] {
        let rows = h.feed_rows(follower).await;
        assert_eq!(rows.len(), 1, "{follower}: {rows:?}");
        assert_eq!(rows[0].0.to_string(), event.trade_id);
    }
    assert_eq!(h.count("SELECT count(*) FROM feed_items").await, 2);
    assert_eq!(h.count("SELECT count(*) FROM feed_trades").await, 1);
}

#[tokio::test]
async fn unfollowed_users_get_no_new_items_and_feeds_are_newest_first() {
    let h = Harness::start().await;
    let trader = h.register("trader").await;
    let stays = h.register("stays").await;
    let leaves = h.register("leaves").await;
    h.follow(&stays, &trader).await;
    h.follow(&leaves, &trader).await;

    let before = trade(&trader, 1_000, 1_700_000_000);
    h.publish(&before).await;
    h.wait_handled(&h.feed, 1).await;

    h.rpc()
        .await
        .unfollow(h.as_user(
            &leaves,
            UnfollowRequest {
                user_id: trader.clone(),
            },
        ))
        .await
        .unwrap();

    // Published out of execution order: the feed still reads newest trade first.
    let latest = trade(&trader, 1_000, 1_700_000_300);
    let middle = trade(&trader, 1_000, 1_700_000_100);
    h.publish(&latest).await;
    h.publish(&middle).await;
    h.wait_handled(&h.feed, 3).await;

    assert_eq!(
        h.feed_rows(&leaves).await.len(),
        1,
        "only the trade from before"
    );
    wait_until(WITHIN, "three items for the one who stayed", || async {
        h.feed_rows(&stays).await.len() == 3
    })
    .await
    .unwrap();
    let feed = h
        .rpc()
        .await
        .get_feed(h.as_user(&stays, GetFeedRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let order: Vec<&str> = feed
        .items
        .iter()
        .map(|item| item.trade_id.as_str())
        .collect();
    assert_eq!(
        order,
        [
            latest.trade_id.as_str(),
            middle.trade_id.as_str(),
            before.trade_id.as_str()
        ]
    );
}
