//! argon2id on a bounded pool: correct answers, constant cost for unknown accounts, the policy,
//! and fast refusal beyond the queue budget.

use argon2::password_hash::{CustomizedPasswordHasher, PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use wharf_auth::password::{
    MAX_CHARS, PasswordError, Passwords, PolicyError, Workspace, check_policy,
};

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

/// One reused workspace answers exactly as the crate's own verifier, whatever the hashes'
/// parameters and in whatever order they come: larger and smaller memory, other variants and
/// versions, another output length, and strings that are not argon2 hashes at all.
#[test]
fn a_reused_workspace_verifies_as_the_crate_does() {
    let password = b"correct horse battery";
    let hashes: Vec<String> = [
        (
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None),
        ),
        (
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(19 * 1024, 2, 1, None),
        ),
        (
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 3, 2, Some(48)),
        ),
        (
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(128, 2, 1, None),
        ),
        (
            Algorithm::Argon2d,
            Version::V0x10,
            Params::new(96, 2, 1, Some(16)),
        ),
    ]
    .into_iter()
    .map(|(algorithm, version, params)| {
        let salt = b"sixteen byte slt";
        Argon2::default()
            .hash_password_customized(
                password,
                salt,
                Some(algorithm.as_str()),
                Some(version.into()),
                params.unwrap(),
            )
            .unwrap()
            .to_string()
    })
    .chain([Argon2::default()
        .hash_password(password)
        .unwrap()
        .to_string()])
    .collect();

    let mut workspace = Workspace::default();
    for round in 0..2 {
        for hash in &hashes {
            let parsed = PasswordHash::new(hash).unwrap();
            for candidate in [&password[..], b"correct horse batterz", b""] {
                let expected = Argon2::default()
                    .verify_password(candidate, &parsed)
                    .is_ok();
                assert_eq!(
                    workspace.verify(candidate, hash),
                    expected,
                    "round {round}, {hash}, {:?}",
                    String::from_utf8_lossy(candidate)
                );
            }
        }
    }
    assert!(workspace.verify(password, &hashes[1]));
    for broken in [
        "",
        "not a hash",
        "$argon2id$v=19$m=64,t=1,p=1$c2l4dGVlbiBieXRlIHNsdA",
        "$scrypt$ln=4,r=8,p=1$c2l4dGVlbiBieXRlIHNsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=7$m=64,t=1,p=1$c2l4dGVlbiBieXRlIHNsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert!(!workspace.verify(password, broken), "{broken:?}");
    }
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
