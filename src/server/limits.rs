//! Connection caps: places for served connections, per-uid places on the
//! unix socket, and what the descriptor limit allows.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tracing::warn;

use crate::lock;

/// Descriptors kept free for Vault connections, the audit log, the lease
/// ledger and the config files, whatever the clients do.
const FD_RESERVE: u64 = 128;

/// The caps shared by every connection past its handshake.
#[derive(Clone)]
pub struct Caps {
    /// Connections being served (`limits.max_connections`).
    pub permits: Arc<Semaphore>,
    /// Connections waiting for one of those places, at most as many as may
    /// be in their handshake.
    pub waiting: Arc<Semaphore>,
}

/// The connection caps `run` can keep with the descriptors it has: the soft
/// `RLIMIT_NOFILE`, raised to the hard limit, less [`FD_RESERVE`]. The
/// default soft limit (often 1024) is below what `limits.max_connections`
/// asks for, and a process out of descriptors cannot reach Vault or write
/// its audit log.
pub fn fd_budget(limits: &crate::config::Limits) -> (usize, usize) {
    let (mut conns, mut handshakes) = (limits.max_connections, limits.max_handshakes);
    if let Some(nofile) = crate::platform::raise_fd_limit() {
        let budget = nofile.saturating_sub(FD_RESERVE).max(2) as usize;
        if conns + handshakes > budget {
            handshakes = handshakes.min(budget / 4).max(1);
            conns = conns.min(budget - handshakes).max(1);
            warn!(
                nofile,
                max_connections = conns,
                max_handshakes = handshakes,
                "The descriptor limit is too low for the configured connection limits; they are lowered"
            );
        }
    }
    (conns, handshakes)
}

// === impl UidCounts ===

/// Open unix-socket connections per uid.
pub struct UidCounts {
    cap: usize,
    open: Mutex<std::collections::HashMap<u32, usize>>,
}

/// A connection's place under its uid's cap; freed on drop.
pub struct UidGuard {
    uid: u32,
    counts: Arc<UidCounts>,
}

impl UidCounts {
    pub fn new(cap: usize) -> UidCounts {
        UidCounts {
            cap: cap.max(1),
            open: Mutex::default(),
        }
    }

    pub fn take(self: &Arc<Self>, uid: u32) -> Option<UidGuard> {
        let mut open = lock(&self.open);
        let n = open.entry(uid).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(UidGuard {
            uid,
            counts: self.clone(),
        })
    }
}

impl Drop for UidGuard {
    fn drop(&mut self) {
        let mut open = lock(&self.counts.open);
        if let Some(n) = open.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}
