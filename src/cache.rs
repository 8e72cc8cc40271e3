//! The opt-in per-secret TTL cache for KV reads.
//!
//! A secret with `cache_ttl` is read from Vault at most once per TTL; reads
//! in between get the cached copy. Every read is still authenticated,
//! decided, scored and audited; only the Vault call is saved. Entries live
//! in the runtime, so a config reload starts with an empty cache. An
//! expired entry is removed on the next lookup or by [`KvCache::evict_expired`],
//! which the server runs every second; the value is wiped when the last
//! reader drops it (`SecretFields` zeroizes on drop).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::vault::Fetched;

#[derive(Default)]
pub struct KvCache {
    entries: RwLock<HashMap<String, Entry>>,
}

struct Entry {
    value: Arc<Fetched>,
    expires: Instant,
}

impl KvCache {
    /// The cached value of `name`, if it has not expired.
    pub fn get(&self, name: &str, now: Instant) -> Option<Arc<Fetched>> {
        {
            let entries = crate::read(&self.entries);
            match entries.get(name) {
                None => return None,
                Some(e) if e.expires > now => return Some(e.value.clone()),
                Some(_) => {}
            }
        }
        // Expired: take it out now rather than waiting for the sweep.
        let mut entries = crate::write(&self.entries);
        if entries.get(name).is_some_and(|e| e.expires <= now) {
            entries.remove(name);
        }
        None
    }

    /// Keeps `value` for `ttl` from `fetched_at`, when the read started.
    pub fn insert(&self, name: &str, value: Arc<Fetched>, fetched_at: Instant, ttl: Duration) {
        let expires = fetched_at + ttl;
        let mut entries = crate::write(&self.entries);
        match entries.get_mut(name) {
            // Never replace a newer read with an older one.
            Some(e) if e.expires >= expires => {}
            Some(e) => *e = Entry { value, expires },
            None => {
                entries.insert(name.to_owned(), Entry { value, expires });
            }
        }
    }

    /// Drops every expired entry; returns how many were dropped.
    pub fn evict_expired(&self, now: Instant) -> usize {
        let mut entries = crate::write(&self.entries);
        let before = entries.len();
        entries.retain(|_, e| e.expires > now);
        before - entries.len()
    }

    pub fn len(&self) -> usize {
        crate::read(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretFields;

    fn fetched(version: u64) -> Arc<Fetched> {
        let mut map = serde_json::Map::new();
        map.insert(
            "password".into(),
            serde_json::Value::String(format!("pw-{version}")),
        );
        Arc::new(Fetched {
            data: SecretFields::from_value(serde_json::Value::Object(map)).unwrap(),
            version: Some(version),
            lease: None,
        })
    }

    #[test]
    fn serves_until_the_ttl_then_forgets() {
        let cache = KvCache::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(5);
        assert!(cache.get("erp", t0).is_none());
        cache.insert("erp", fetched(1), t0, ttl);
        assert_eq!(
            cache
                .get("erp", t0 + Duration::from_secs(4))
                .unwrap()
                .version,
            Some(1)
        );
        assert!(cache.get("other", t0).is_none());
        assert!(cache.get("erp", t0 + ttl).is_none());
        assert!(cache.is_empty(), "an expired entry is removed on lookup");
    }

    #[test]
    fn an_older_read_never_replaces_a_newer_one() {
        let cache = KvCache::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(5);
        cache.insert("erp", fetched(2), t0 + Duration::from_secs(1), ttl);
        cache.insert("erp", fetched(1), t0, ttl);
        assert_eq!(cache.get("erp", t0).unwrap().version, Some(2));
        cache.insert("erp", fetched(3), t0 + Duration::from_secs(2), ttl);
        assert_eq!(cache.get("erp", t0).unwrap().version, Some(3));
    }

    #[test]
    fn eviction_drops_expired_values() {
        let cache = KvCache::default();
        let t0 = Instant::now();
        let value = fetched(1);
        let weak = Arc::downgrade(&value);
        cache.insert("erp", value, t0, Duration::from_secs(1));
        cache.insert("crm", fetched(7), t0, Duration::from_secs(10));
        assert_eq!(cache.evict_expired(t0 + Duration::from_secs(2)), 1);
        assert!(
            weak.upgrade().is_none(),
            "the evicted value is dropped, and so wiped"
        );
        assert_eq!(cache.len(), 1);
    }
}
