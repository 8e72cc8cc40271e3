//! Coalescing of identical concurrent KV reads.
//!
//! When many requests for the same secret arrive together, one Vault read
//! serves all of them, without giving anyone a stale value: a request only
//! shares a read that *started after it arrived*, so every caller gets the
//! version current at its call time or newer. Reads are shared only while
//! callers wait for them; when the last one has its answer the shared value
//! is dropped (and wiped), so nothing is cached.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct Coalescer<T> {
    slots: Mutex<HashMap<String, Arc<Slot<T>>>>,
    tickets: AtomicU64,
}

struct Slot<T> {
    /// The last read: the ticket it started at, and its value.
    last: tokio::sync::Mutex<Option<(u64, Arc<T>)>>,
    waiting: AtomicUsize,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer {
            slots: Mutex::new(HashMap::new()),
            tickets: AtomicU64::new(0),
        }
    }
}

impl<T> Coalescer<T> {
    /// Runs `fetch` for `key`, or shares a read of `key` that started after
    /// this call arrived.
    pub async fn run<E, F, Fut>(&self, key: &str, fetch: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let arrival = self.tickets.fetch_add(1, Ordering::SeqCst);
        let slot = {
            let mut slots = crate::lock(&self.slots);
            let slot = slots
                .entry(key.to_owned())
                .or_insert_with(|| {
                    Arc::new(Slot {
                        last: tokio::sync::Mutex::new(None),
                        waiting: AtomicUsize::new(0),
                    })
                })
                .clone();
            slot.waiting.fetch_add(1, Ordering::SeqCst);
            slot
        };
        let mut last = slot.last.lock().await;
        let result = match &*last {
            Some((started, value)) if *started > arrival => Ok(value.clone()),
            _ => {
                // Every caller that arrived before this ticket may share it.
                let started = self.tickets.fetch_add(1, Ordering::SeqCst);
                match fetch().await {
                    Ok(v) => {
                        let v = Arc::new(v);
                        *last = Some((started, v.clone()));
                        Ok(v)
                    }
                    Err(e) => {
                        *last = None;
                        Err(e)
                    }
                }
            }
        };
        if slot.waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Nobody else is waiting: drop the shared value now.
            *last = None;
            drop(last);
            let mut slots = crate::lock(&self.slots);
            if slot.waiting.load(Ordering::SeqCst) == 0 {
                slots.remove(key);
            }
        }
        result
    }

    /// Keys with callers waiting right now.
    pub fn in_flight(&self) -> usize {
        crate::lock(&self.slots).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_reads_that_started_after_they_arrived() {
        let c = Arc::new(Coalescer::<u32>::default());
        let reads = Arc::new(AtomicU32::new(0));
        let version = Arc::new(AtomicU32::new(1));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (c, reads, version) = (c.clone(), reads.clone(), version.clone());
            tasks.push(tokio::spawn(async move {
                let seen_at_call = version.load(Ordering::SeqCst);
                let got = c
                    .run("k", || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok::<_, ()>(version.load(Ordering::SeqCst))
                    })
                    .await
                    .unwrap();
                // Never older than what was current when the call began.
                assert!(*got >= seen_at_call);
            }));
        }
        // A rotation in the middle of the burst.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        version.store(2, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        let n = reads.load(Ordering::SeqCst);
        assert!(n <= 3, "{n} reads for 50 concurrent callers");
        assert_eq!(
            c.in_flight(),
            0,
            "nothing is kept once everyone has an answer"
        );
    }

    #[tokio::test]
    async fn sequential_callers_each_read() {
        let c = Coalescer::<u32>::default();
        let reads = AtomicU32::new(0);
        for _ in 0..3 {
            c.run("k", || async {
                Ok::<_, ()>(reads.fetch_add(1, Ordering::SeqCst))
            })
            .await
            .unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }
}
