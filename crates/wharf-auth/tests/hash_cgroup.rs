//! The hashing threads move into the cgroup they were given, read back from the kernel
//! (`/proc/self/task/<tid>/cgroup`), and the rest of the process stays where it was. Against
//! the machine's cgroup-v1 `cpu` hierarchy, with a cgroup of the test's own.
//!
//! Making a cgroup needs root and cgroup v1 (CI has both). Where they are missing the
//! cgroup tests fail, unless `WHARF_TEST_WITHOUT_CGROUPS=1` says this machine cannot run them.

use std::path::{Path, PathBuf};

use wharf_auth::AuthConfig;
use wharf_auth::cgroup::{self, IdleCgroup};
use wharf_auth::password::{HashPlacement, Passwords};

/// A cgroup of the test's own, as the README says to make one; `None` only where the machine
/// is declared unable to make one.
fn test_cgroup() -> Option<IdleCgroup> {
    match IdleCgroup::create(&format!(
        "wharf-test-hash-{}",
        uuid::Uuid::now_v7().simple()
    )) {
        Ok(cgroup) => Some(cgroup),
        Err(err) if std::env::var_os("WHARF_TEST_WITHOUT_CGROUPS").is_some() => {
            eprintln!("skipped (WHARF_TEST_WITHOUT_CGROUPS): {err}");
            None
        }
        Err(err) => panic!(
            "cannot make a cgroup ({err}); run as root on a cgroup-v1 machine, or set WHARF_TEST_WITHOUT_CGROUPS=1"
        ),
    }
}

fn cpu_cgroup_of_thread(tid: &str) -> String {
    cgroup::v1_cpu_cgroup(Path::new(&format!("/proc/self/task/{tid}/cgroup"))).unwrap()
}

fn pool_in(cgroup: &Path) -> Result<Passwords, wharf_auth::password::PasswordError> {
    Passwords::with_placement(
        1,
        0,
        &HashPlacement {
            cgroup: Some(cgroup.to_owned()),
            ..HashPlacement::default()
        },
    )
}

#[tokio::test]
async fn hashing_threads_join_their_cgroup_and_nothing_else_does() {
    let Some(cgroup) = test_cgroup() else { return };
    let own_name = format!("/{}", cgroup.path().file_name().unwrap().to_string_lossy());
    assert_eq!(
        std::fs::read_to_string(cgroup.path().join("cpu.idle")).unwrap(),
        "1\n",
        "the cgroup runs only on idle time"
    );
    assert!(cgroup.members().unwrap().is_empty());

    // The pool returns once its thread is in the cgroup.
    let passwords = pool_in(cgroup.path()).unwrap();
    let members = cgroup.members().unwrap();
    assert_eq!(
        members.len(),
        1,
        "the pool's one thread, nothing else: {members:?}"
    );
    let tid = &members[0];
    let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .expect("the member is a thread of this process");
    assert_eq!(comm.trim_end(), "wharf-argon2-0");
    assert_eq!(cpu_cgroup_of_thread(tid), own_name);
    assert_ne!(
        cgroup::v1_cpu_cgroup(Path::new("/proc/thread-self/cgroup")).unwrap(),
        own_name,
        "the caller's thread stays in the process's group"
    );

    let hash = passwords.hash("a password to hash".into()).await.unwrap();
    assert!(
        passwords
            .verify("a password to hash".into(), Some(hash))
            .await
            .unwrap(),
        "hashing works from inside the cgroup"
    );
}

#[test]
fn a_cgroup_that_cannot_be_joined_fails_the_pool_start() {
    // A directory, but not a cgroup: nothing to write the thread's id to, and nothing is
    // created in its place.
    let dir = plain_dir();
    assert!(cgroup::join(&dir).is_err());
    let err = pool_in(&dir).expect_err("the pool refuses to start outside its cgroup");
    assert!(
        err.to_string()
            .contains("cannot move a password thread into the cgroup"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "no file was created in the directory"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dropping_the_cgroup_sends_its_threads_home_and_removes_it() {
    let Some(cgroup) = test_cgroup() else { return };
    let home = cgroup::v1_cpu_cgroup(Path::new("/proc/thread-self/cgroup")).unwrap();
    let path = cgroup.path().to_owned();
    // This test's own thread joins, then the cgroup goes.
    cgroup::join(&path).unwrap();
    assert_ne!(
        cgroup::v1_cpu_cgroup(Path::new("/proc/thread-self/cgroup")).unwrap(),
        home
    );
    drop(cgroup);
    assert_eq!(
        cgroup::v1_cpu_cgroup(Path::new("/proc/thread-self/cgroup")).unwrap(),
        home,
        "back in the cgroup it came from"
    );
    assert!(!path.exists(), "the cgroup is removed");
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

/// An empty directory of this test's own under the system's temporary folder.
fn plain_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wharf-not-a-cgroup-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir(&dir).unwrap();
    dir
}
