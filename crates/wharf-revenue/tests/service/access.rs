//! Who may call, and what a caller is told: admins only; every token failure is the one
//! generic `UNAUTHENTICATED`; a valid non-admin token is `PERMISSION_DENIED`; a bad request is
//! `INVALID_ARGUMENT` with a field violation per problem, and nothing internal leaks.

use prost_types::Timestamp;
use tonic::{Code, Request};
use wharf_proto::wharf::revenue::v1::{GetRevenueRequest, ListLedgerEntriesRequest};
use wharf_tokens::layer::UNAUTHENTICATED;

use crate::harness::{Harness, assert_code, bearer, violations};

/// No token, a malformed header, and every row of the attack table: UNAUTHENTICATED with the
/// one message, on both RPCs, before any validation (a bad request does not reveal itself).
#[tokio::test]
async fn callers_without_a_valid_token_are_unauthenticated() {
    let h = Harness::start().await;
    let mut client = h.client().await;
    let bad_request = GetRevenueRequest {
        instrument: "not a symbol".to_owned(),
        ..GetRevenueRequest::default()
    };

    let status = assert_code(
        client.get_revenue(Request::new(bad_request.clone())).await,
        Code::Unauthenticated,
        "no token",
    );
    assert_eq!(status.message(), UNAUTHENTICATED);
    let status = assert_code(
        client
            .list_ledger_entries(Request::new(ListLedgerEntriesRequest::default()))
            .await,
        Code::Unauthenticated,
        "no token",
    );
    assert_eq!(status.message(), UNAUTHENTICATED);

    let mut not_bearer = Request::new(GetRevenueRequest::default());
    not_bearer
        .metadata_mut()
        .insert("authorization", "Basic YWRtaW46YWRtaW4=".parse().unwrap());
    let status = assert_code(
        client.get_revenue(not_bearer).await,
        Code::Unauthenticated,
        "basic auth",
    );
    assert_eq!(status.message(), UNAUTHENTICATED);

    let attacks = h.forger.attack_table("admin-user", "s-1");
    assert!(!attacks.is_empty());
    for (attack, token) in attacks {
        let status = assert_code(
            client
                .get_revenue(bearer(bad_request.clone(), &token))
                .await,
            Code::Unauthenticated,
            attack,
        );
        assert_eq!(status.message(), UNAUTHENTICATED, "{attack}");
        let status = assert_code(
            client
                .list_ledger_entries(bearer(ListLedgerEntriesRequest::default(), &token))
                .await,
            Code::Unauthenticated,
            attack,
        );
        assert_eq!(status.message(), UNAUTHENTICATED, "{attack}");
    }
}

/// A valid token without the admin role: PERMISSION_DENIED, naming the role; with it, OK.
#[tokio::test]
async fn only_admins_may_read_revenue() {
    let h = Harness::start().await;
    let mut client = h.client().await;

    for token in [h.token(&["user"]), h.forger.legitimate("u-1", "s-1")] {
        let status = assert_code(
            client
                .get_revenue(bearer(GetRevenueRequest::default(), &token))
                .await,
            Code::PermissionDenied,
            "user role",
        );
        assert_eq!(status.message(), "the admin role is required");
        assert_code(
            client
                .list_ledger_entries(bearer(ListLedgerEntriesRequest::default(), &token))
                .await,
            Code::PermissionDenied,
            "user role",
        );
    }

    let admin = h.token(&["admin"]);
    client
        .get_revenue(bearer(GetRevenueRequest::default(), &admin))
        .await
        .expect("admin reads revenue");
    client
        .list_ledger_entries(bearer(ListLedgerEntriesRequest::default(), &admin))
        .await
        .expect("admin lists the ledger");
}

fn at(seconds: i64, nanos: i32) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos })
}

/// Each bad GetRevenue field is named: an empty or inverted range, timestamps outside what a
/// protobuf Timestamp may hold, an instrument that cannot be a symbol.
#[tokio::test]
async fn bad_revenue_requests_name_their_fields() {
    let h = Harness::start().await;
    let mut client = h.client().await;
    let cases = [
        (
            GetRevenueRequest {
                from: at(1_000, 0),
                to: at(1_000, 0),
                ..GetRevenueRequest::default()
            },
            vec![("to", "must be later than from")],
        ),
        (
            GetRevenueRequest {
                from: at(2_000, 0),
                to: at(1_000, 0),
                ..GetRevenueRequest::default()
            },
            vec![("to", "must be later than from")],
        ),
        (
            GetRevenueRequest {
                from: at(1_000, -1),
                to: at(i64::MAX, 0),
                ..GetRevenueRequest::default()
            },
            vec![
                ("from", "nanos must be 0 to 999999999"),
                ("to", "must be between the years 0001 and 9999"),
            ],
        ),
        (
            GetRevenueRequest {
                instrument: "W H".to_owned(),
                ..GetRevenueRequest::default()
            },
            vec![(
                "instrument",
                "must be 1 to 32 visible ASCII characters, e.g. WHRF",
            )],
        ),
    ];
    for (request, expected) in cases {
        let status = assert_code(
            client.get_revenue(h.admin(request.clone())).await,
            Code::InvalidArgument,
            &format!("{request:?}"),
        );
        assert_eq!(status.message(), "invalid revenue request");
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(field, description)| (field.to_owned(), description.to_owned()))
            .collect();
        assert_eq!(violations(&status), expected, "{request:?}");
    }

    // The edges of the range are fine.
    client
        .get_revenue(h.admin(GetRevenueRequest {
            from: at(-62_135_596_800, 0),
            to: at(253_402_300_799, 999_999_999),
            instrument: " WHRF ".to_owned(),
        }))
        .await
        .expect("the widest range, and a padded symbol");
}

/// A page size out of range and a token this service never issued are each named; both at
/// once give two violations.
#[tokio::test]
async fn bad_list_requests_name_their_fields() {
    let h = Harness::start().await;
    let mut client = h.client().await;
    let size = "must be 1 to 500, or 0 for 50";
    let token = "must be a next_page_token from an earlier response";
    let cases = [
        (-1, "", vec![("page_size", size)]),
        (501, "", vec![("page_size", size)]),
        (10, "garbage!", vec![("page_token", token)]),
        (10, "AAAAAAAA", vec![("page_token", token)]),
        (
            i32::MAX,
            "eyJpZCI6MX0",
            vec![("page_size", size), ("page_token", token)],
        ),
    ];
    for (page_size, page_token, expected) in cases {
        let status = assert_code(
            client
                .list_ledger_entries(h.admin(ListLedgerEntriesRequest {
                    page_size,
                    page_token: page_token.to_owned(),
                }))
                .await,
            Code::InvalidArgument,
            &format!("{page_size} {page_token:?}"),
        );
        assert_eq!(status.message(), "invalid list ledger entries request");
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(field, description)| (field.to_owned(), description.to_owned()))
            .collect();
        assert_eq!(violations(&status), expected);
    }
    client
        .list_ledger_entries(h.admin(ListLedgerEntriesRequest {
            page_size: 500,
            page_token: String::new(),
        }))
        .await
        .expect("the largest page");
}
