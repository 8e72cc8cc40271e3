//! Connections in their TLS handshake: unauthenticated, so capped per
//! transport, and evicted oldest-idle-first when the cap is full.

use std::io;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::lock;

// === impl Handshakes ===

/// Connections in their TLS handshake, oldest first.
pub(super) struct Handshakes {
    cap: usize,
    inner: Mutex<PendingSet>,
}

#[derive(Default)]
struct PendingSet {
    next: u64,
    pending: std::collections::BTreeMap<u64, Pending>,
}

struct Pending {
    /// 0 until the connection's task first read from it; then 1 + the
    /// bytes the client has sent so far.
    sent: Arc<std::sync::atomic::AtomicU64>,
    evict: tokio::sync::oneshot::Sender<()>,
}

/// A connection's place among those in their handshake; freed on drop.
pub(super) struct HandshakeSlot {
    id: u64,
    set: Arc<Handshakes>,
    sent: Arc<std::sync::atomic::AtomicU64>,
    evicted: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Handshakes {
    pub(super) fn new(cap: usize) -> Handshakes {
        Handshakes {
            cap: cap.max(1),
            inner: Mutex::new(PendingSet::default()),
        }
    }

    /// A place for a new connection. When every place is taken, one is
    /// evicted: first a connection that was read from and has sent less
    /// than a ClientHello (idle or trickling), the fewest bytes and then
    /// the oldest first; then one not read from yet (under load its task
    /// may not have run), oldest first; a connection that has sent a
    /// ClientHello or more, as a bot's has within one round trip, last.
    pub(super) fn admit(self: &Arc<Self>) -> HandshakeSlot {
        use std::sync::atomic::Ordering;
        /// Fewer bytes than the smallest ClientHello.
        const TRICKLE: u64 = 64;
        let rank = |id: u64, p: &Pending| match p.sent.load(Ordering::Relaxed) {
            0 => (1, 0, id),
            n if n - 1 < TRICKLE => (0, n - 1, id),
            n => (2, n - 1, id),
        };
        let mut set = lock(&self.inner);
        if set.pending.len() >= self.cap {
            let victim = set
                .pending
                .iter()
                .min_by_key(|(id, p)| rank(**id, p))
                .map(|(id, _)| *id);
            if let Some(p) = victim.and_then(|id| set.pending.remove(&id)) {
                let _ = p.evict.send(());
            }
        }
        let id = set.next;
        set.next += 1;
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel();
        set.pending.insert(
            id,
            Pending {
                sent: sent.clone(),
                evict: tx,
            },
        );
        HandshakeSlot {
            id,
            set: self.clone(),
            sent,
            evicted: Some(rx),
        }
    }
}

impl Handshakes {
    pub(super) fn is_empty(&self) -> bool {
        lock(&self.inner).pending.is_empty()
    }
}

impl HandshakeSlot {
    /// `stream`, noting in this slot when its peer first sends a byte.
    pub(super) fn watch<S>(&self, stream: S) -> FirstBytes<S> {
        FirstBytes {
            inner: stream,
            seen: Some(self.sent.clone()),
        }
    }

    /// Completes when this connection is evicted to make room.
    pub(super) async fn evicted(&mut self) {
        // A dropped sender (the slot freed without eviction) is not an
        // eviction.
        if let Some(rx) = self.evicted.take() {
            if rx.await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        lock(&self.set.inner).pending.remove(&self.id);
    }
}

/// Counts the bytes a client sends during its handshake, so that idle and
/// trickling connections are the first to be evicted.
pub(super) struct FirstBytes<S> {
    inner: S,
    seen: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::sync::atomic::Ordering;
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if let Some(seen) = &self.seen {
            // The first poll marks the connection as read from (1), then
            // every byte counts.
            let _ = seen.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
            if read > 0 {
                seen.fetch_add(read, Ordering::Relaxed);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
