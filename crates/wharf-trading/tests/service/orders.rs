//! Orders: the one transaction, its refusals, idempotency, the state machine, settlement,
//! authorization and pagination.

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;
use wharf_proto::Event;
use wharf_proto::wharf::revenue::v1::FeeRecorded;
use wharf_proto::wharf::trading::v1::{
    GetAccountRequest, GetOrderRequest, ListOrdersRequest, ListTradesRequest, OrderState,
    PlaceOrderRequest, SetPriceRequest, Side, TradeExecuted, WithdrawRequest,
};
use wharf_testkit::wait_until;

use crate::harness::{Harness, assert_code};

/// Buy then sell: cash, position, fee (10 bps, rounded up), audit rows that sum to the
/// balances, and one `trading.trade.executed` per trade carrying the full trade.
#[tokio::test]
async fn a_buy_and_a_sell_move_cash_positions_and_emit_their_trades() {
    let h = Harness::start().await;
    let alice = h.user(&[]);
    assert_eq!(h.deposit(&alice, 1_000_000).await, 1_000_000);

    let buy = h.order(&alice, "WHRF", Side::Buy, 10).await.unwrap();
    assert_eq!(buy.state, OrderState::Filled as i32);
    assert_eq!((buy.price_minor, buy.fee_minor), (12_500, 125));
    let history: Vec<i32> = buy.history.iter().map(|t| t.to).collect();
    assert_eq!(
        history,
        [OrderState::New as i32, OrderState::Filled as i32],
        "the order's history"
    );
    let sell = h.order(&alice, "WHRF", Side::Sell, 4).await.unwrap();
    assert_eq!(sell.fee_minor, 50);

    let account = h
        .client()
        .await
        .get_account(alice.req(GetAccountRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.cash_minor, 1_000_000 - 125_000 - 125 + 50_000 - 50);
    assert_eq!(account.positions.len(), 1);
    assert_eq!(account.positions[0].quantity, 6);
    assert_eq!(account.currency, "USD");

    let audit_cash: i64 = h.count("SELECT SUM(cash_delta)::bigint FROM audit").await;
    assert_eq!(audit_cash, account.cash_minor, "audit rows sum to the cash");
    assert!(
        wharf_trading::reconcile::run(&h.pool, Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty(),
        "every invariant holds"
    );

    // Both trades reach the stream through the outbox, in order, with the full payload.
    let stream = h.js.get_stream("TRADING").await.unwrap();
    wait_until(Duration::from_secs(20), "both trades in the stream", || {
        let stream = stream.clone();
        async move {
            let mut stream = stream;
            stream
                .info()
                .await
                .is_ok_and(|info| info.state.messages == 2)
        }
    })
    .await
    .unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(first.subject.as_str(), TradeExecuted::SUBJECT);
    let event: TradeExecuted = prost::Message::decode(first.payload.as_ref()).unwrap();
    assert_eq!(event.order_id, buy.order_id);
    assert_eq!(event.user_id, alice.user_id);
    assert_eq!(event.account_id, account.account_id);
    assert_eq!(
        (
            event.quantity,
            event.price_minor,
            event.notional_minor,
            event.fee_minor
        ),
        (10, 12_500, 125_000, 125)
    );
    assert_eq!(h.count("SELECT count(*) FROM outbox").await, 0);
}

/// Refusals carry the right status and details, and write nothing at all.
#[tokio::test]
async fn refused_orders_write_nothing() {
    let h = Harness::start().await;
    let bob = h.user(&[]);
    h.deposit(&bob, 1_000).await;

    let poor = assert_code(
        h.order(&bob, "WHRF", Side::Buy, 1).await,
        Code::FailedPrecondition,
        "insufficient funds",
    );
    let failure = poor.get_details_precondition_failure().unwrap();
    assert_eq!(failure.violations[0].r#type, "INSUFFICIENT_FUNDS");
    assert_code(
        h.order(&bob, "BOLT", Side::Sell, 1).await,
        Code::FailedPrecondition,
        "insufficient position",
    );
    let unknown = assert_code(
        h.order(&bob, "NOPE", Side::Buy, 1).await,
        Code::NotFound,
        "unknown instrument",
    );
    assert_eq!(
        unknown.get_details_resource_info().unwrap().resource_name,
        "NOPE"
    );
    for (quantity, side, instrument, field) in [
        (0, Side::Buy, "WHRF", "quantity"),
        (-5, Side::Buy, "WHRF", "quantity"),
        (1, Side::Unspecified, "WHRF", "side"),
        (1, Side::Buy, "not a symbol", "instrument"),
    ] {
        let bad = assert_code(
            h.order(&bob, instrument, side, quantity).await,
            Code::InvalidArgument,
            field,
        );
        let violations = bad.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, field);
    }
    let no_key = assert_code(
        h.client()
            .await
            .place_order(bob.req(PlaceOrderRequest {
                idempotency_key: String::new(),
                instrument: "BOLT".into(),
                side: Side::Buy.into(),
                quantity: 1,
            }))
            .await,
        Code::InvalidArgument,
        "no idempotency key",
    );
    assert_eq!(
        no_key.get_details_bad_request().unwrap().field_violations[0].field,
        "idempotency_key"
    );
    for table in ["orders", "trades", "outbox", "positions"] {
        assert_eq!(
            h.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} is empty"
        );
    }
    assert_eq!(
        h.count("SELECT count(*) FROM audit").await,
        1,
        "the deposit only"
    );
}

/// The same key twice (even concurrently) is one order and the same answer; the same key with
/// another body is refused.
#[tokio::test]
async fn place_order_is_idempotent_by_key() {
    let h = Harness::start().await;
    let carol = h.user(&[]);
    h.deposit(&carol, 10_000_000).await;
    let request = PlaceOrderRequest {
        idempotency_key: "order-1".to_owned(),
        instrument: "ACME".to_owned(),
        side: Side::Buy.into(),
        quantity: 3,
    };
    let attempts = (0..8).map(|_| {
        let request = request.clone();
        let carol = carol.clone();
        let h = &h;
        async move {
            h.client()
                .await
                .place_order(carol.req(request))
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap()
        }
    });
    let orders = futures::future::join_all(attempts).await;
    assert!(orders.iter().all(|o| o.order_id == orders[0].order_id));
    assert_eq!(h.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(h.count("SELECT count(*) FROM trades").await, 1);

    let other = PlaceOrderRequest {
        quantity: 4,
        ..request
    };
    let reused = assert_code(
        h.client().await.place_order(carol.req(other)).await,
        Code::FailedPrecondition,
        "same key, other body",
    );
    assert_eq!(
        reused.get_details_error_info().unwrap().reason,
        "IDEMPOTENCY_KEY_REUSED"
    );
}

/// `revenue.fee.recorded` settles the order; a second one (a re-drive) changes nothing; the
/// database refuses every transition outside the state machine.
#[tokio::test]
async fn fee_recorded_settles_and_the_database_guards_the_state_machine() {
    let h = Harness::start().await;
    let dave = h.user(&[]);
    h.deposit(&dave, 1_000_000).await;
    let order = h.order(&dave, "BOLT", Side::Buy, 5).await.unwrap();

    for _ in 0..2 {
        let mut fee = FeeRecorded {
            order_id: order.order_id.clone(),
            account_id: order.account_id.clone(),
            fee_minor: order.fee_minor,
            ..FeeRecorded::default()
        };
        wharf_events::envelope::stamp(&mut fee);
        h.publish_raw(&fee).await;
    }
    let mut client = h.client().await;
    wait_until(Duration::from_secs(20), "the order to settle", || {
        let mut client = client.clone();
        let request = dave.req(GetOrderRequest {
            order_id: order.order_id.clone(),
        });
        async move {
            client
                .get_order(request)
                .await
                .is_ok_and(|r| r.into_inner().order.unwrap().state == OrderState::Settled as i32)
        }
    })
    .await
    .unwrap();
    let settled = client
        .get_order(dave.req(GetOrderRequest {
            order_id: order.order_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let history: Vec<(i32, i32)> = settled.history.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        history,
        [
            (OrderState::Unspecified as i32, OrderState::New as i32),
            (OrderState::New as i32, OrderState::Filled as i32),
            (OrderState::Filled as i32, OrderState::Settled as i32),
        ]
    );

    for forbidden in [
        "UPDATE orders SET state = 'FILLED'",
        "UPDATE orders SET state = 'NEW'",
        "UPDATE orders SET state = 'REJECTED'",
    ] {
        let err = sqlx::query(sqlx::AssertSqlSafe(forbidden.to_owned()))
            .execute(&h.pool)
            .await
            .expect_err(forbidden);
        assert!(err.to_string().contains("cannot go from SETTLED"), "{err}");
    }
    assert!(
        sqlx::query("DELETE FROM audit")
            .execute(&h.pool)
            .await
            .is_err(),
        "audit rows are append-only"
    );
    assert!(
        sqlx::query("UPDATE accounts SET cash_minor = -1")
            .execute(&h.pool)
            .await
            .is_err(),
        "no negative cash"
    );
}

/// Callers are authenticated; each sees only their own orders; prices need the admin role.
#[tokio::test]
async fn authorization_and_ownership() {
    let h = Harness::start().await;
    let (erin, frank, admin) = (h.user(&[]), h.user(&[]), h.user(&["admin"]));
    h.deposit(&erin, 1_000_000).await;
    let order = h.order(&erin, "BOLT", Side::Buy, 1).await.unwrap();
    let mut client = h.client().await;

    assert_code(
        client.get_account(GetAccountRequest {}).await,
        Code::Unauthenticated,
        "no token",
    );
    assert_code(
        client
            .get_order(frank.req(GetOrderRequest {
                order_id: order.order_id.clone(),
            }))
            .await,
        Code::NotFound,
        "another user's order",
    );
    let listed = client
        .list_orders(frank.req(ListOrdersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.orders.is_empty(), "frank sees none of erin's orders");

    let set = SetPriceRequest {
        symbol: "BOLT".to_owned(),
        price_minor: 1_000,
    };
    assert_code(
        client.set_price(erin.req(set.clone())).await,
        Code::PermissionDenied,
        "a user setting a price",
    );
    client.set_price(admin.req(set)).await.unwrap();
    let next = h.order(&erin, "BOLT", Side::Buy, 1).await.unwrap();
    assert_eq!(next.price_minor, 1_000, "the new price applies");
    let bad = assert_code(
        client
            .set_price(admin.req(SetPriceRequest {
                symbol: "bolt".into(),
                price_minor: 0,
            }))
            .await,
        Code::InvalidArgument,
        "bad price",
    );
    assert_eq!(
        bad.get_details_bad_request()
            .unwrap()
            .field_violations
            .len(),
        2
    );

    // Withdraw: more than the cash is refused and changes nothing.
    let cash = client
        .get_account(erin.req(GetAccountRequest {}))
        .await
        .unwrap()
        .into_inner()
        .cash_minor;
    assert_code(
        client
            .withdraw(erin.req(WithdrawRequest {
                idempotency_key: "w1".into(),
                amount_minor: cash + 1,
            }))
            .await,
        Code::FailedPrecondition,
        "overdraw",
    );
    let left = client
        .withdraw(erin.req(WithdrawRequest {
            idempotency_key: "w2".into(),
            amount_minor: cash,
        }))
        .await
        .unwrap()
        .into_inner()
        .cash_minor;
    assert_eq!(left, 0);
}

/// Lists are newest first, every item once across pages; a forged token is refused.
#[tokio::test]
async fn orders_and_trades_paginate_newest_first() {
    let h = Harness::start().await;
    let gina = h.user(&[]);
    h.deposit(&gina, 10_000_000).await;
    let mut placed = Vec::new();
    for _ in 0..7 {
        placed.push(h.order(&gina, "BOLT", Side::Buy, 1).await.unwrap().order_id);
    }
    placed.reverse();
    let mut client = h.client().await;
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_orders(gina.req(ListOrdersRequest {
                page_size: 3,
                page_token: token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.orders.len() <= 3);
        seen.extend(page.orders.into_iter().map(|o| o.order_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, placed, "every order once, newest first");

    let trades = client
        .list_trades(gina.req(ListTradesRequest {
            page_size: 100,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trades.trades.len(), 7);
    assert!(trades.next_page_token.is_empty());

    for (size, token, field) in [(3, "garbage", "page_token"), (1000, "", "page_size")] {
        let status = assert_code(
            client
                .list_orders(gina.req(ListOrdersRequest {
                    page_size: size,
                    page_token: token.to_owned(),
                }))
                .await,
            Code::InvalidArgument,
            field,
        );
        assert_eq!(
            status.get_details_bad_request().unwrap().field_violations[0].field,
            field
        );
    }
}
