//! The RPCs: authentication first, then validation with field details, then the answers.

use tonic::Code;
use tonic_types::StatusExt;
use wharf_proto::wharf::social::v1::{
    FollowRequest, GetFeedRequest, GetProfileRequest, ListAchievementsRequest,
    ListFollowersRequest, ListFollowingRequest, UnfollowRequest, UpdateProfileRequest,
};
use wharf_tokens::keys::generate_key;

use crate::harness::{Harness, assert_code, bearer, fields, keys, trade, violations};

#[tokio::test]
async fn every_call_needs_a_valid_token_and_refusals_say_nothing_more() {
    let h = Harness::start().await;
    let user = h.register("ada").await;
    let mut rpc = h.rpc().await;
    let (stranger, _) = keys(&generate_key());
    let foreign = stranger
        .issue(&user, "session", &["user".to_owned()])
        .unwrap()
        .0;
    for token in [None, Some("garbage".to_owned()), Some(foreign)] {
        let results = [
            rpc.get_profile(bearer_or(&token, GetProfileRequest::default()))
                .await
                .map(|_| ()),
            rpc.follow(bearer_or(&token, FollowRequest::default()))
                .await
                .map(|_| ()),
            rpc.get_feed(bearer_or(&token, GetFeedRequest::default()))
                .await
                .map(|_| ()),
            rpc.list_followers(bearer_or(&token, ListFollowersRequest::default()))
                .await
                .map(|_| ()),
            rpc.update_profile(bearer_or(&token, UpdateProfileRequest::default()))
                .await
                .map(|_| ()),
            rpc.list_achievements(bearer_or(&token, ListAchievementsRequest::default()))
                .await
                .map(|_| ()),
        ];
        for result in results {
            let status = assert_code(result, Code::Unauthenticated, "no valid token");
            assert_eq!(status.message(), "invalid or missing credentials");
            assert!(status.details().is_empty(), "no details leak");
        }
    }
}

fn bearer_or<T>(token: &Option<String>, message: T) -> tonic::Request<T> {
    match token {
        Some(token) => bearer(message, token),
        None => tonic::Request::new(message),
    }
}

#[tokio::test]
async fn profiles_are_read_updated_and_validated() {
    let h = Harness::start().await;
    let ada = h.register("ada").await;
    let bob = h.register("bob").await;
    let mut rpc = h.rpc().await;

    let mine = rpc
        .get_profile(h.as_user(&ada, GetProfileRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(
        (mine.user_id.as_str(), mine.handle.as_str()),
        (ada.as_str(), "ada")
    );
    assert!(mine.created_at.is_some());
    let theirs = rpc
        .get_profile(h.as_user(
            &ada,
            GetProfileRequest {
                user_id: bob.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(theirs.handle, "bob");

    let missing = assert_code(
        rpc.get_profile(h.as_user(
            &ada,
            GetProfileRequest {
                user_id: "no-such-user".to_owned(),
            },
        ))
        .await,
        Code::NotFound,
        "unknown profile",
    );
    let info = missing.get_details_resource_info().expect("resource info");
    assert_eq!(info.resource_name, "no-such-user");
    assert_eq!(info.resource_type, "wharf.social.v1.Profile");

    let updated = rpc
        .update_profile(h.as_user(
            &ada,
            UpdateProfileRequest {
                display_name: "  Ada Lovelace ".to_owned(),
                bio: "Analyst of engines.".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(updated.display_name, "Ada Lovelace");
    assert_eq!(updated.bio, "Analyst of engines.");

    let cases = [
        (String::new(), String::new(), vec!["display_name"]),
        ("x".repeat(65), String::new(), vec!["display_name"]),
        (
            "A\u{7}da".to_owned(),
            "b".repeat(281),
            vec!["display_name", "bio"],
        ),
        ("Ada".to_owned(), "line\nbreak".to_owned(), vec!["bio"]),
    ];
    for (display_name, bio, wanted) in cases {
        let status = assert_code(
            rpc.update_profile(h.as_user(&ada, UpdateProfileRequest { display_name, bio }))
                .await,
            Code::InvalidArgument,
            "bad update",
        );
        assert_eq!(fields(&status), wanted, "{:?}", violations(&status));
    }
    // Nothing written by the refused updates.
    let after = rpc
        .get_profile(h.as_user(&ada, GetProfileRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(after.display_name, "Ada Lovelace");

    // A caller whose registration has not completed has no profile to update.
    let status = assert_code(
        rpc.update_profile(h.as_user(
            "pending-user",
            UpdateProfileRequest {
                display_name: "Pending".to_owned(),
                bio: String::new(),
            },
        ))
        .await,
        Code::FailedPrecondition,
        "no profile yet",
    );
    let failure = status.get_details_precondition_failure().expect("details");
    assert_eq!(failure.violations[0].r#type, "PROFILE");
}

#[tokio::test]
async fn follows_are_idempotent_counted_and_refused_for_self_or_unknown() {
    let h = Harness::start().await;
    let ada = h.register("ada").await;
    let bob = h.register("bob").await;
    let mut rpc = h.rpc().await;
    let follow = |user_id: &str| FollowRequest {
        user_id: user_id.to_owned(),
    };

    for _ in 0..2 {
        rpc.follow(h.as_user(&ada, follow(&bob))).await.unwrap();
    }
    let reader = rpc.clone();
    let profile = |user: String| {
        let mut rpc = reader.clone();
        let request = h.as_user(&ada, GetProfileRequest { user_id: user });
        async move {
            rpc.get_profile(request)
                .await
                .unwrap()
                .into_inner()
                .profile
                .unwrap()
        }
    };
    let b = profile(bob.clone()).await;
    let a = profile(ada.clone()).await;
    assert_eq!((b.follower_count, b.following_count), (1, 0));
    assert_eq!((a.follower_count, a.following_count), (0, 1));

    let status = assert_code(
        rpc.follow(h.as_user(&ada, follow(&ada))).await,
        Code::InvalidArgument,
        "follow yourself",
    );
    assert_eq!(fields(&status), ["user_id"]);
    let status = assert_code(
        rpc.follow(h.as_user(&ada, follow(""))).await,
        Code::InvalidArgument,
        "follow nobody",
    );
    assert_eq!(fields(&status), ["user_id"]);
    let status = assert_code(
        rpc.follow(h.as_user(&ada, follow("ghost"))).await,
        Code::NotFound,
        "follow an unknown profile",
    );
    assert_eq!(
        status.get_details_resource_info().unwrap().resource_name,
        "ghost"
    );
    assert_code(
        rpc.follow(h.as_user("pending-user", follow(&bob))).await,
        Code::FailedPrecondition,
        "follow without a profile",
    );

    for _ in 0..2 {
        rpc.unfollow(h.as_user(
            &ada,
            UnfollowRequest {
                user_id: bob.clone(),
            },
        ))
        .await
        .unwrap();
    }
    let b = profile(bob.clone()).await;
    let a = profile(ada.clone()).await;
    assert_eq!((b.follower_count, a.following_count), (0, 0));
    assert_eq!(h.count("SELECT count(*) FROM follows").await, 0);
}

#[tokio::test]
async fn lists_page_with_opaque_tokens_and_refuse_bad_ones() {
    let h = Harness::start().await;
    let star = h.register("star").await;
    let mut fans = Vec::new();
    for n in 0..5 {
        let fan = h.register(&format!("fan_{n}")).await;
        h.follow(&fan, &star).await;
        fans.push(fan);
    }
    let mut rpc = h.rpc().await;

    // Followers, newest follow first, two at a time.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = rpc
            .list_followers(h.as_user(
                &fans[0],
                ListFollowersRequest {
                    user_id: star.clone(),
                    page_size: 2,
                    page_token: token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.profiles.len() <= 2);
        seen.extend(page.profiles.into_iter().map(|p| p.user_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = fans.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // Following of the caller (no user named), default page.
    let following = rpc
        .list_following(h.as_user(&fans[0], ListFollowingRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(following.profiles.len(), 1);
    assert_eq!(following.profiles[0].handle, "star");
    assert_eq!(following.profiles[0].follower_count, 5);
    assert!(following.next_page_token.is_empty());

    // A followers token is not a following token, and garbage is garbage.
    let first = rpc
        .list_followers(h.as_user(
            &star,
            ListFollowersRequest {
                page_size: 1,
                ..ListFollowersRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let status = assert_code(
        rpc.list_following(h.as_user(
            &star,
            ListFollowingRequest {
                page_token: first.next_page_token.clone(),
                ..ListFollowingRequest::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "another list's token",
    );
    assert_eq!(fields(&status), ["page_token"]);
    let status = assert_code(
        rpc.list_followers(h.as_user(
            &star,
            ListFollowersRequest {
                user_id: "bad\u{0}id".to_owned(),
                page_size: 501,
                page_token: "not a token".to_owned(),
            },
        ))
        .await,
        Code::InvalidArgument,
        "everything wrong",
    );
    assert_eq!(fields(&status), ["user_id", "page_size", "page_token"]);
    assert_code(
        rpc.list_followers(h.as_user(
            &star,
            ListFollowersRequest {
                page_size: -1,
                ..ListFollowersRequest::default()
            },
        ))
        .await,
        Code::InvalidArgument,
        "negative page size",
    );
    assert_code(
        rpc.list_following(h.as_user(
            &star,
            ListFollowingRequest {
                user_id: "ghost".to_owned(),
                ..ListFollowingRequest::default()
            },
        ))
        .await,
        Code::NotFound,
        "unknown user's list",
    );
    assert_code(
        rpc.list_achievements(h.as_user(
            &star,
            ListAchievementsRequest {
                user_id: "ghost".to_owned(),
            },
        ))
        .await,
        Code::NotFound,
        "unknown user's achievements",
    );

    // The feed pages too: five trades, two per page, newest first.
    let trades: Vec<_> = (0..5_i64)
        .map(|n| trade(&star, 100, 1_700_000_000 + n))
        .collect();
    for event in &trades {
        h.publish(event).await;
    }
    h.wait_handled(&h.feed, 5).await;
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let page = rpc
            .get_feed(h.as_user(
                &fans[2],
                GetFeedRequest {
                    page_size: 2,
                    page_token: token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        items.extend(page.items.into_iter().map(|item| item.trade_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<String> = trades.iter().rev().map(|t| t.trade_id.clone()).collect();
    assert_eq!(items, newest_first);
    let status = assert_code(
        rpc.get_feed(h.as_user(
            &fans[2],
            GetFeedRequest {
                page_size: 0,
                page_token: first.next_page_token,
            },
        ))
        .await,
        Code::InvalidArgument,
        "a followers token on the feed",
    );
    assert_eq!(fields(&status), ["page_token"]);
}
