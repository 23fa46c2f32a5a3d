//! Passwords: argon2id with the OWASP parameters (the crate's defaults: m = 19 MiB, t = 2,
//! p = 1), computed off the async runtime.
//!
//! A hash costs tens of milliseconds of CPU, so it runs on a pool of dedicated threads, one per
//! core, at the lowest priority (nice 19), inside the caller's span. Beyond that, at most
//! `queue_budget` calls may wait; the next is refused at once with [`PasswordError::Busy`] (the
//! service answers `RESOURCE_EXHAUSTED`), so a login flood degrades into fast refusals instead
//! of a queue that grows until every request times out, and cheap RPCs keep their cores.
//!
//! An unknown account still costs one verification (against a fixed dummy hash), so response
//! time does not reveal which accounts exist.
//!
//! A niced thread yields only to the threads of its own scheduling group: with the kernel's
//! autogroups (a session each) or a cgroup per service, the hashes are charged to the whole
//! service, whose runtime threads then wait behind other processes. [`HashPlacement::cgroup`]
//! moves the hashing threads into a cgroup of their own (cgroup v1, made with
//! `cpu.idle = 1`), so they compete with nothing but idle time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::Output;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Shortest accepted password, in characters.
pub const MIN_CHARS: usize = 8;
/// Longest accepted password, in characters (never truncated: longer is refused).
pub const MAX_CHARS: usize = 128;

/// Why a password was not accepted for a new account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("password must be at least {MIN_CHARS} characters")]
    TooShort,
    #[error("password must be at most {MAX_CHARS} characters")]
    TooLong,
}

/// Checks a new password against the policy (NIST SP 800-63B: length, no composition rules).
pub fn check_policy(password: &str) -> Result<(), PolicyError> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        Err(PolicyError::TooShort)
    } else if chars > MAX_CHARS {
        Err(PolicyError::TooLong)
    } else {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too many hashes are running or waiting: refuse now, retry later.
    #[error("too many password checks in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

type Job = Box<dyn FnOnce(&mut Workspace) + Send + 'static>;

/// One thread's argon2 working memory (19 MiB with the default parameters), kept from one
/// verification to the next.
///
/// A fresh allocation per hash costs more than the zeroing: the allocator hands the pages
/// back to the kernel between hashes, and the next hash takes a page fault for each of them,
/// about a fifth of a hash's time on a busy machine. Argon2 writes every block before it reads
/// it, so reusing the memory changes nothing in the result.
#[derive(Default)]
pub struct Workspace {
    blocks: Vec<Block>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

impl Workspace {
    /// Whether `password` matches the PHC string `stored`, computed in this workspace. An
    /// unparsable hash or unsupported parameters never match. The outputs are compared in
    /// constant time.
    pub fn verify(&mut self, password: &[u8], stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
            return false;
        };
        let version = match hash.version.map(Version::try_from).transpose() {
            Ok(version) => version.unwrap_or_default(),
            Err(_) => return false,
        };
        let Ok(params) = Params::try_from(&hash) else {
            return false;
        };
        let blocks = params.block_count();
        if self.blocks.len() < blocks {
            self.blocks.resize(blocks, Block::default());
        }
        let mut buffer = [0_u8; Output::MAX_LENGTH];
        let Some(out) = buffer.get_mut(..expected.len()) else {
            return false;
        };
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, out, &mut self.blocks[..blocks])
            .is_ok()
            && Output::new(out).is_ok_and(|computed| computed == *expected)
    }
}

/// The CPU priority of the hashing threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashPriority {
    /// `SCHED_IDLE`: hashes run only when no other thread wants the CPU, and any thread that
    /// wakes up preempts them at once. But the kernel counts a core that runs only idle-class
    /// threads as idle, so it sends nearly every wake-up to the other core, each an
    /// inter-processor interrupt (on a VM, a trip through the hypervisor); and any other busy
    /// process on the host (even a niced one) starves logins.
    Idle,
    /// nice 19 (the default): a normal thread that wakes up preempts the hash, its wake-up
    /// stays on the waking core, and the hashes keep a small share of the CPU against other
    /// busy processes, so logins are never starved.
    #[default]
    Low,
    /// The same as every other thread.
    Normal,
}

impl HashPriority {
    fn apply(self) {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        use thread_priority::{ThreadPriority, set_current_thread_priority};
        let idle = || {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Min,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
            )
        };
        let result = match self {
            Self::Normal => Ok(()),
            Self::Low => set_current_thread_priority(ThreadPriority::Min),
            // Where the idle class is refused, the lowest normal priority is the next best.
            Self::Idle => idle().or_else(|_| set_current_thread_priority(ThreadPriority::Min)),
        };
        if let Err(err) = result {
            tracing::warn!(?err, priority = ?self, "cannot set the password threads' CPU priority");
        }
    }
}

/// Where the hashing threads run: their priority and, optionally, a cgroup of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashPlacement {
    pub priority: HashPriority,
    /// A cgroup directory the hashing threads join before their first hash; one that cannot
    /// be joined fails the pool's start. With cgroup v1, a `cpu` cgroup made with
    /// `cpu.idle = 1` takes the hashes out of the service's share of the CPU. With cgroup v2 a
    /// thread can only join a threaded cgroup inside its own process's cgroup, where its time
    /// still counts against the service: there it only ranks the hashes below the service's
    /// other threads. `None` (the default): they stay in the process's group.
    pub cgroup: Option<PathBuf>,
}

impl HashPlacement {
    /// Applies the placement to the calling thread. A priority the kernel refuses is logged
    /// (a container may forbid it) and the thread hashes at its own; a cgroup it cannot join
    /// is an error: the operator asked for it.
    fn apply(&self) -> Result<(), String> {
        self.priority.apply();
        match &self.cgroup {
            Some(cgroup) => crate::cgroup::join(cgroup).map_err(|err| {
                format!(
                    "cannot move a password thread into the cgroup {}: {err}",
                    cgroup.display()
                )
            }),
            None => Ok(()),
        }
    }
}

/// The bounded argon2id pool.
///
/// Hashes run on `workers` dedicated threads at the lowest priority ([`HashPriority`]): they use
/// every idle cycle, but the async runtime's threads — the cheap RPCs, the event loops — take
/// the CPU the moment they need it, so a login flood does not raise everyone else's latency.
#[derive(Debug, Clone)]
pub struct Passwords {
    jobs: std::sync::mpsc::SyncSender<Job>,
    admitted: Arc<Semaphore>,
    capacity: usize,
    dummy_hash: Arc<str>,
    hashes: Arc<AtomicU64>,
}

impl Passwords {
    /// `workers` hashes at once (the cores), plus `queue_budget` waiting, at the default
    /// priority, in the process's own group.
    pub fn new(workers: usize, queue_budget: usize) -> Result<Self, PasswordError> {
        Self::with_placement(workers, queue_budget, &HashPlacement::default())
    }

    pub fn with_placement(
        workers: usize,
        queue_budget: usize,
        placement: &HashPlacement,
    ) -> Result<Self, PasswordError> {
        let dummy_hash = Argon2::default()
            .hash_password(b"wharf dummy password for unknown accounts")
            .map_err(|err| PasswordError::Internal(err.to_string()))?
            .to_string();
        let workers = workers.max(1);
        let capacity = workers + queue_budget;
        // Admission is bounded by the semaphore; the channel only needs room for what it admits.
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(capacity);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        let (placed, placements) = std::sync::mpsc::channel();
        for index in 0..workers {
            let receiver = Arc::clone(&receiver);
            let placement = placement.clone();
            let placed = placed.clone();
            std::thread::Builder::new()
                .name(format!("wharf-argon2-{index}"))
                .spawn(move || {
                    // Unsent only if the pool's start already failed on another thread.
                    let _ = placed.send(placement.apply());
                    drop(placed);
                    let mut workspace = Workspace::default();
                    loop {
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut workspace),
                            // Every `Passwords` handle is gone.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|err| PasswordError::Internal(err.to_string()))?;
        }
        drop(placed);
        // Each thread places itself before its first job. On an error, returning drops `jobs`,
        // and the threads already started end.
        for _ in 0..workers {
            match placements.recv() {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(PasswordError::Internal(reason)),
                Err(_) => {
                    return Err(PasswordError::Internal(
                        "a password thread ended before it started".to_owned(),
                    ));
                }
            }
        }
        Ok(Self {
            jobs,
            admitted: Arc::new(Semaphore::new(capacity)),
            capacity,
            dummy_hash: dummy_hash.into(),
            hashes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sized to this machine's cores.
    pub fn for_this_machine(queue_budget: usize) -> Result<Self, PasswordError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores, queue_budget)
    }

    /// The PHC string of a new hash (with a random salt).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move |_| {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|err| PasswordError::Internal(err.to_string()))
        })
        .await?
    }

    /// Whether `password` matches `stored`. `None` (no such account) costs the same and is
    /// never a match.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matched = self
            .run(move |workspace| workspace.verify(password.as_bytes(), &hash))
            .await?;
        Ok(known && matched)
    }

    /// Hashes computed so far (for tests and metrics).
    pub fn hashes_computed(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    /// Calls admitted right now (running or waiting).
    pub fn in_flight(&self) -> usize {
        self.capacity - self.admitted.available_permits()
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Workspace) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| PasswordError::Busy)?;
        let span = tracing::Span::current();
        let hashes = Arc::clone(&self.hashes);
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |workspace| {
            let _entered = span.enter();
            hashes.fetch_add(1, Ordering::Relaxed);
            let _ = done.send(work(workspace));
        });
        // Never blocks: the channel has room for every admitted call.
        self.jobs
            .try_send(job)
            .map_err(|_| PasswordError::Internal("the password pool is gone".to_owned()))?;
        result
            .in_current_span()
            .await
            .map_err(|_| PasswordError::Internal("a password worker stopped".to_owned()))
    }
}
