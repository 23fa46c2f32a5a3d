//! Cgroups for the password threads (see [`crate::password::HashPlacement`]).
//!
//! The service only *joins* a cgroup it is given; making one is the operator's job (the README
//! shows how). [`IdleCgroup`] makes one for tests, benchmarks and development machines.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the cgroup-v1 `cpu` hierarchy is mounted (on machines that mount cgroup v1).
pub const V1_CPU_HIERARCHY: &str = "/sys/fs/cgroup/cpu";

/// Moves the calling thread into the cgroup at `dir`, through its `tasks` (v1) or
/// `cgroup.threads` (v2) file: writing `0` there names the writer. The file must already
/// exist, so a directory that is not a cgroup is an error.
pub fn join(dir: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(membership_file(dir))?
        .write_all(b"0")
}

fn membership_file(dir: &Path) -> PathBuf {
    let threads = dir.join("cgroup.threads");
    if threads.is_file() {
        threads
    } else {
        dir.join("tasks")
    }
}

/// The `cpu` cgroup path (`/` = the hierarchy's root) in a `/proc/…/cgroup` file: the
/// `hierarchy:controllers:path` line whose controllers include `cpu`.
pub fn v1_cpu_cgroup(proc_cgroup_file: &Path) -> io::Result<String> {
    let cgroups = std::fs::read_to_string(proc_cgroup_file)?;
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
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no cgroup-v1 cpu line in {}", proc_cgroup_file.display()),
            )
        })
}

/// A cgroup of its own under the cgroup-v1 `cpu` hierarchy, with `cpu.idle = 1`: what it
/// holds runs only when nothing outside it wants the CPU, and its time is not charged to the
/// group of the process it belongs to. Removed on drop; threads still in it go back to the
/// `cpu` cgroup this process was in when it was made.
#[derive(Debug)]
pub struct IdleCgroup {
    dir: PathBuf,
    home: PathBuf,
}

impl IdleCgroup {
    /// `<hierarchy>/<name>`. Fails where there is no v1 `cpu` hierarchy (a cgroup-v2-only
    /// machine), without the right to make one (not root), or without `cpu.idle` (Linux
    /// before 5.15); the error says which.
    pub fn create(name: &str) -> io::Result<Self> {
        let hierarchy = Path::new(V1_CPU_HIERARCHY);
        if !hierarchy.join("tasks").is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no cgroup-v1 cpu hierarchy at {V1_CPU_HIERARCHY}"),
            ));
        }
        let own = v1_cpu_cgroup(Path::new("/proc/self/cgroup"))?;
        let home = hierarchy.join(own.trim_start_matches('/'));
        let dir = hierarchy.join(name);
        std::fs::create_dir(&dir)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", dir.display())))?;
        let cgroup = Self { dir, home };
        std::fs::write(cgroup.dir.join("cpu.idle"), "1")
            .map_err(|err| io::Error::new(err.kind(), format!("cpu.idle (Linux ≥ 5.15): {err}")))?;
        Ok(cgroup)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The ids of the threads in it now.
    pub fn members(&self) -> io::Result<Vec<String>> {
        let tasks = std::fs::read_to_string(self.dir.join("tasks"))?;
        Ok(tasks.lines().map(str::to_owned).collect())
    }
}

impl Drop for IdleCgroup {
    fn drop(&mut self) {
        let home = self.home.join("tasks");
        for tid in self.members().unwrap_or_default() {
            // A thread that ended meanwhile cannot be moved, and need not be.
            let _ = std::fs::write(&home, tid);
        }
        if let Err(err) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(%err, cgroup = %self.dir.display(), "cannot remove a cgroup");
        }
    }
}
