//! The hashing threads move into the cgroup they were given, read back from the kernel
//! (`/proc/self/task/<tid>/cgroup`), and the rest of the process stays where it was. Against
//! the machine's cgroup-v1 `cpu` hierarchy, with a cgroup of the test's own (nextest runs each
//! test in a process of its own, so no other pool starts threads meanwhile).

use std::collections::BTreeSet;
use std::path::PathBuf;

use wharf_auth::AuthConfig;
use wharf_auth::cgroup::{IdleCgroup, V1_CPU_HIERARCHY};
use wharf_auth::config::AuthConfigError;
use wharf_auth::password::{HashPlacement, Passwords};

/// A cgroup of the test's own, as the README says to make one; `None` where this machine has
/// no writable cgroup-v1 `cpu` hierarchy.
fn test_cgroup() -> Option<IdleCgroup> {
    IdleCgroup::create(&format!(
        "wharf-test-hash-{}",
        uuid::Uuid::now_v7().simple()
    ))
}

/// The path of thread `tid`'s cgroup in the `cpu` hierarchy (v1: the line naming `cpu`).
fn cpu_cgroup_of(tid: &str) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/self/task/{tid}/cgroup")).unwrap();
    cgroups
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers
                .split(',')
                .any(|controller| controller == "cpu")
                .then(|| path.to_owned())
        })
        .expect("the thread has a cpu cgroup")
}

/// Ids of this process's threads called `name`.
fn threads_named(name: &str) -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| {
            let tid = entry.ok()?.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            (comm.trim_end() == name).then_some(tid)
        })
        .collect()
}

#[tokio::test]
async fn hashing_threads_join_their_cgroup_and_nothing_else_does() {
    let Some(cgroup) = test_cgroup() else {
        eprintln!("skipped: no writable cgroup-v1 cpu hierarchy at {V1_CPU_HIERARCHY}");
        return;
    };
    let own_name = format!("/{}", cgroup.path().file_name().unwrap().to_string_lossy());
    assert_eq!(
        std::fs::read_to_string(cgroup.path().join("cpu.idle")).unwrap(),
        "1\n",
        "the cgroup runs only on idle time"
    );
    let before = threads_named("wharf-argon2-0");
    let passwords = Passwords::with_placement(
        1,
        0,
        &HashPlacement {
            cgroup: Some(cgroup.path().to_owned()),
            ..HashPlacement::default()
        },
    )
    .unwrap();
    // The thread joins before its first job: once a hash is back, it has.
    let hash = passwords.hash("a password to hash".into()).await.unwrap();
    assert!(
        passwords
            .verify("a password to hash".into(), Some(hash))
            .await
            .unwrap(),
        "hashing works from inside the cgroup"
    );

    let new: Vec<String> = threads_named("wharf-argon2-0")
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(new.len(), 1, "one new hashing thread: {new:?}");
    assert_eq!(cpu_cgroup_of(&new[0]), own_name, "the hashing thread moved");
    let members = std::fs::read_to_string(cgroup.path().join("tasks")).unwrap();
    assert_eq!(
        members.lines().collect::<Vec<_>>(),
        vec![new[0].as_str()],
        "the cgroup holds the hashing thread and nothing else"
    );
    assert_ne!(
        cpu_cgroup_of(&wharf_auth::cgroup::this_thread_id().unwrap()),
        own_name,
        "the caller's thread stays in the process's group"
    );
}

#[tokio::test]
async fn a_cgroup_that_cannot_be_joined_leaves_hashing_working() {
    // A directory, but not a cgroup: the write is refused, the thread hashes where it is.
    let dir = tempfile_dir();
    let passwords = Passwords::with_placement(
        1,
        0,
        &HashPlacement {
            cgroup: Some(dir.clone()),
            ..HashPlacement::default()
        },
    )
    .unwrap();
    let hash = passwords.hash("a password to hash".into()).await.unwrap();
    assert!(
        passwords
            .verify("a password to hash".into(), Some(hash))
            .await
            .unwrap()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_password_cgroup_is_read_from_configuration() {
    let config: AuthConfig = wharf_runtime::config::load(None, &[]).unwrap();
    assert_eq!(config.password_cgroup, None, "unset by default");
    let config: AuthConfig = wharf_runtime::config::load(
        None,
        &["password_cgroup=/sys/fs/cgroup/cpu/wharf-auth-hash".to_owned()],
    )
    .unwrap();
    assert_eq!(
        config.password_cgroup,
        Some(PathBuf::from("/sys/fs/cgroup/cpu/wharf-auth-hash"))
    );
}

#[test]
fn a_password_cgroup_that_is_not_a_cgroup_is_a_config_error() {
    let dir = tempfile_dir();
    let config = AuthConfig {
        password_cgroup: Some(dir.clone()),
        ..AuthConfig::default()
    };
    assert!(
        matches!(config.validate(), Err(AuthConfigError::NotACgroup(ref path)) if *path == dir),
        "{:?}",
        config.validate()
    );
    let _ = std::fs::remove_dir_all(dir);

    if let Some(cgroup) = test_cgroup() {
        let config = AuthConfig {
            password_cgroup: Some(cgroup.path().to_owned()),
            ..AuthConfig::default()
        };
        config.validate().expect("a cgroup directory is accepted");
    }
}

/// An empty directory of this test's own under the system's temporary folder.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wharf-not-a-cgroup-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir(&dir).unwrap();
    dir
}
