//! The hashing threads run at the CPU priority they were given, read back from the kernel
//! (`/proc/self/task/<tid>/stat`). One test in its own binary, so no other test's pool starts
//! threads of the same name meanwhile.

use std::collections::BTreeSet;

use wharf_auth::password::{HashPlacement, HashPriority, Passwords};

const SCHED_OTHER: u32 = 0;
const SCHED_IDLE: u32 = 5;

/// (nice, scheduling policy) from a thread's `stat`.
fn nice_and_policy(stat: &str) -> (i32, u32) {
    // After "pid (comm) ": state is field 3, nice field 19, policy field 41.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat has a comm")
        .1
        .split_whitespace()
        .collect();
    let nice = fields[19 - 3].parse().expect("nice is a number");
    let policy = fields[41 - 3].parse().expect("policy is a number");
    (nice, policy)
}

/// (thread id, nice, scheduling policy) of every thread of this process called `name`.
fn threads_named(name: &str) -> Vec<(u32, i32, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc is mounted") {
        let tid = entry.expect("a task entry").file_name();
        let Ok(tid) = tid.to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
            continue;
        };
        let (nice, policy) = nice_and_policy(&stat);
        found.push((tid, nice, policy));
    }
    found
}

/// Starts a one-thread pool at `priority`, lets it hash once (the thread sets its priority
/// before its first job), and returns the new thread's (nice, policy).
async fn priority_of_a_new_pool(priority: HashPriority) -> (i32, u32, Passwords) {
    let before: BTreeSet<u32> = threads_named("wharf-argon2-0")
        .into_iter()
        .map(|(tid, _, _)| tid)
        .collect();
    let placement = HashPlacement {
        priority,
        cgroup: None,
    };
    let passwords = Passwords::with_placement(1, 0, &placement).unwrap();
    passwords.hash("a password to hash".into()).await.unwrap();
    let new: Vec<_> = threads_named("wharf-argon2-0")
        .into_iter()
        .filter(|(tid, _, _)| !before.contains(tid))
        .collect();
    assert_eq!(new.len(), 1, "one new hashing thread: {new:?}");
    let (_, nice, policy) = new[0];
    (nice, policy, passwords)
}

#[tokio::test]
async fn hashing_threads_run_at_the_priority_they_were_given() {
    let (own_nice, own_policy) =
        nice_and_policy(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    assert_eq!(own_policy, SCHED_OTHER);

    assert_eq!(HashPriority::default(), HashPriority::Low);
    let (nice, policy, _low) = priority_of_a_new_pool(HashPriority::Low).await;
    assert_eq!((nice, policy), (19, SCHED_OTHER), "low: nice 19");

    let (_, policy, _idle) = priority_of_a_new_pool(HashPriority::Idle).await;
    assert_eq!(policy, SCHED_IDLE, "idle: the idle scheduling class");

    let (nice, policy, _normal) = priority_of_a_new_pool(HashPriority::Normal).await;
    assert_eq!(
        (nice, policy),
        (own_nice, SCHED_OTHER),
        "normal: as the rest of the process"
    );
}
