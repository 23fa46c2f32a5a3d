//! A small bounded cache whose entries expire, sharded so that concurrent calls rarely meet
//! on one lock. Bounded the simple way: a full shard first drops its expired entries, then,
//! if still full, everything (the cache only saves work; a miss is always correct).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 16;

#[derive(Debug)]
pub struct TtlCache<K, V> {
    shards: Vec<Mutex<HashMap<K, (V, Instant)>>>,
    per_shard: usize,
    hasher: RandomState,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        // Entries are inserted and removed whole: a poisoned shard is still consistent.
        self.shards[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value, if present and not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some((value, until)) if Instant::now() < *until => Some(value.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: K, value: V, until: Instant) {
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard {
            let now = Instant::now();
            shard.retain(|_, (_, until)| now < *until);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(key, (value, until));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let cache = TtlCache::new(32);
        let later = Instant::now() + Duration::from_secs(60);
        cache.insert("a", 1, later);
        cache.insert("gone", 2, Instant::now());
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"gone"), None);
        let keys: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        for key in &keys {
            cache.insert(key.as_str(), 0, later);
        }
        let held: usize = cache.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= 32, "{held} entries held");
    }
}
