//! Cgroups for the password threads (see [`crate::password::HashPlacement`]).
//!
//! The service only *joins* a cgroup it is given; making one is the operator's job (the README
//! shows how). [`IdleCgroup`] makes one for tests, benchmarks and development machines.

use std::path::{Path, PathBuf};

/// Where the cgroup-v1 `cpu` hierarchy is mounted on Debian and most distributions.
pub const V1_CPU_HIERARCHY: &str = "/sys/fs/cgroup/cpu";

/// Moves the calling thread into the cgroup at `dir`: through `cgroup.threads` (v2) or `tasks`
/// (v1), whichever it has.
pub fn join(dir: &Path) -> std::io::Result<()> {
    std::fs::write(membership_file(dir), this_thread_id()?)
}

/// Whether `dir` looks like a cgroup (has a file threads are written to).
pub fn is_cgroup(dir: &Path) -> bool {
    ["cgroup.threads", "tasks"]
        .iter()
        .any(|file| dir.join(file).is_file())
}

fn membership_file(dir: &Path) -> PathBuf {
    let threads = dir.join("cgroup.threads");
    if threads.is_file() {
        threads
    } else {
        dir.join("tasks")
    }
}

/// The kernel's id of the calling thread: `/proc/thread-self` links to `<pid>/task/<tid>`.
pub fn this_thread_id() -> std::io::Result<String> {
    let link = std::fs::read_link("/proc/thread-self")?;
    link.file_name()
        .and_then(|tid| tid.to_str())
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::other("cannot read this thread's id"))
}

/// A cgroup of its own under the cgroup-v1 `cpu` hierarchy, with `cpu.idle = 1`: what it
/// holds runs only when nothing outside it wants the CPU. Removed on drop (threads still in it
/// go back to the hierarchy's root first).
#[derive(Debug)]
pub struct IdleCgroup {
    dir: PathBuf,
}

impl IdleCgroup {
    /// `<hierarchy>/<name>`; `None` where there is no writable v1 `cpu` hierarchy (not root,
    /// or a cgroup-v2-only machine) or the kernel has no `cpu.idle` (before 5.15).
    pub fn create(name: &str) -> Option<Self> {
        let hierarchy = Path::new(V1_CPU_HIERARCHY);
        if !hierarchy.join("tasks").is_file() {
            return None;
        }
        let dir = hierarchy.join(name);
        std::fs::create_dir(&dir).ok()?;
        let cgroup = Self { dir };
        std::fs::write(cgroup.dir.join("cpu.idle"), "1").ok()?;
        Some(cgroup)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for IdleCgroup {
    fn drop(&mut self) {
        let root = Path::new(V1_CPU_HIERARCHY).join("tasks");
        if let Ok(tasks) = std::fs::read_to_string(self.dir.join("tasks")) {
            for tid in tasks.lines() {
                // A thread that ended meanwhile cannot be moved, and need not be.
                let _ = std::fs::write(&root, tid);
            }
        }
        if let Err(err) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(%err, cgroup = %self.dir.display(), "cannot remove a cgroup");
        }
    }
}
