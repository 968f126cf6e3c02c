//! A bounded cache of token validations with a per-entry deadline.
//!
//! Keys are SHA-256 digests of the token (the token itself is never kept), plus whether the
//! validation allowed an expired token. Each entry lives until its own deadline, which the
//! caller sets to at most `token_cache_time` and never past the token's expiry. When the cache
//! is full, expired entries are dropped first, then the entries closest to their deadline.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The cache key of one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32], bool);

impl Key {
    /// The key of `token`, validated with or without `allow_expired`.
    pub fn new(token: &str, allow_expired: bool) -> Key {
        Key(Sha256::digest(token.as_bytes()).into(), allow_expired)
    }
}

/// Validation results by token, each until its own deadline.
#[derive(Debug)]
pub struct Cache<V> {
    capacity: usize,
    entries: Mutex<HashMap<Key, (Instant, V)>>,
}

impl<V: Clone> Cache<V> {
    /// An empty cache holding at most `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> Cache<V> {
        Cache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value, unless absent or past its deadline at `now`.
    pub fn get(&self, key: &Key, now: Instant) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((deadline, v)) if *deadline > now => Some(v.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` until `deadline` (ignored when the deadline is not after `now`).
    pub fn insert(&self, key: Key, value: V, deadline: Instant, now: Instant) {
        if self.capacity == 0 || deadline <= now {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (d, _)| *d > now);
            // still full: drop the eighth closest to expiry (amortises the scan)
            if entries.len() >= self.capacity {
                let mut deadlines: Vec<Instant> = entries.values().map(|(d, _)| *d).collect();
                deadlines.sort_unstable();
                let cut = deadlines[(self.capacity / 8).min(deadlines.len() - 1)];
                entries.retain(|_, (d, _)| *d > cut);
            }
        }
        entries.insert(key, (deadline, value));
    }

    /// Number of entries, expired ones included.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_at_their_deadline() {
        let c = Cache::new(10);
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        c.insert(Key::new("a", false), 1, t0 + 5 * s, t0);
        c.insert(Key::new("b", false), 2, t0 + s, t0);
        assert_eq!(c.get(&Key::new("a", false), t0), Some(1));
        assert_eq!(
            c.get(&Key::new("a", true), t0),
            None,
            "allow_expired is part of the key"
        );
        assert_eq!(c.get(&Key::new("b", false), t0 + 2 * s), None);
        assert_eq!(c.get(&Key::new("a", false), t0 + 5 * s), None);
        // a deadline already past is not stored
        c.insert(Key::new("c", false), 3, t0, t0);
        assert_eq!(c.get(&Key::new("c", false), t0), None);
    }

    #[test]
    fn size_is_bounded() {
        let c = Cache::new(16);
        let t0 = Instant::now();
        for i in 0..1000u64 {
            c.insert(
                Key::new(&i.to_string(), false),
                i,
                t0 + Duration::from_secs(10 + i),
                t0,
            );
            assert!(c.len() <= 16);
        }
        // the newest (latest deadline) survives
        assert_eq!(c.get(&Key::new("999", false), t0), Some(999));
        // expired entries go first
        let later = t0 + Duration::from_secs(5000);
        c.insert(
            Key::new("x", false),
            1,
            later + Duration::from_secs(1),
            later,
        );
        assert_eq!(c.len(), 1);

        let off = Cache::new(0);
        off.insert(Key::new("a", false), 1, t0 + Duration::from_secs(1), t0);
        assert!(off.is_empty());
    }
}
