//! argon2id on a bounded pool: correct answers, constant cost for unknown accounts, the policy,
//! and fast refusal beyond the queue budget.

use wharf_auth::password::{MAX_CHARS, PasswordError, Passwords, PolicyError, check_policy};

/// A hash verifies its password and nothing else; the PHC string says argon2id with the OWASP
/// parameters.
#[tokio::test]
async fn hash_and_verify() {
    let passwords = Passwords::new(2, 4).unwrap();
    let hash = passwords
        .hash("correct horse battery".into())
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(
        passwords
            .verify("correct horse battery".into(), Some(hash.clone()))
            .await
            .unwrap()
    );
    assert!(
        !passwords
            .verify("correct horse batterz".into(), Some(hash))
            .await
            .unwrap()
    );
}

/// An unknown account is never a match, and still costs one hash.
#[tokio::test]
async fn unknown_account_costs_one_hash() {
    let passwords = Passwords::new(1, 1).unwrap();
    let before = passwords.hashes_computed();
    assert!(
        !passwords
            .verify("whatever-it-is".into(), None)
            .await
            .unwrap()
    );
    assert_eq!(passwords.hashes_computed(), before + 1);
}

/// Length rules count characters, not bytes, and never truncate.
#[test]
fn policy() {
    assert_eq!(check_policy("short"), Err(PolicyError::TooShort));
    assert_eq!(
        check_policy("ééééééé"),
        Err(PolicyError::TooShort),
        "7 characters, 14 bytes"
    );
    assert_eq!(check_policy("éééééééé"), Ok(()));
    assert_eq!(check_policy(&"x".repeat(64)), Ok(()));
    assert_eq!(check_policy(&"x".repeat(MAX_CHARS)), Ok(()));
    assert_eq!(
        check_policy(&"x".repeat(MAX_CHARS + 1)),
        Err(PolicyError::TooLong)
    );
}

/// Beyond the workers and the queue budget, a call is refused at once instead of queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_queue_budget_calls_are_refused_at_once() {
    let passwords = Passwords::new(1, 0).unwrap();
    // Hold the only slot with one hash, and try a second while it runs.
    let mut attempts = 0;
    let refused = loop {
        attempts += 1;
        assert!(attempts <= 20, "never managed to overlap two hashes");
        let busy = passwords.clone();
        let first = tokio::spawn(async move { busy.hash("a long enough password".into()).await });
        while passwords.in_flight() == 0 && !first.is_finished() {
            tokio::task::yield_now().await;
        }
        let second = passwords.hash("another password".into()).await;
        first.await.unwrap().unwrap();
        if passwords.hashes_computed() >= 1 && second.is_err() {
            break second;
        }
        // The first hash finished before the second arrived; try again.
    };
    assert!(matches!(refused, Err(PasswordError::Busy)), "{refused:?}");
    passwords
        .hash("capacity is back".into())
        .await
        .expect("accepted once the slot frees");
}
