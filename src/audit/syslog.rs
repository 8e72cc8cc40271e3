//! Ships audit records off-host: RFC 5424 syslog over TCP with octet-counting
//! framing (RFC 6587 §3.4.1, `<len> <msg>`).
//!
//! The local audit file stays the record of truth; this is a copy for a
//! central collector. [`SyslogSink::send`] never blocks the request path: it
//! formats the frame and puts it on a bounded queue, and when the queue is
//! full the record is dropped and counted. One background thread owns the
//! connection, connects lazily, and after an error keeps the unsent frames at
//! the head of the queue and retries with exponential backoff.
//!
//! Delivery is at least once while the queue has room. A frame that was
//! partly written when the connection broke is sent again in full, so the
//! collector may see it twice. A frame written just as the collector dies can
//! still be lost inside the kernel's socket buffers; before each write the
//! thread checks whether the collector has closed the connection, which
//! closes most of that window.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// `log audit`, RFC 5424 §6.2.1.
pub const DEFAULT_FACILITY: u8 = 13;
/// Frames held while the collector is slow or unreachable.
pub const DEFAULT_QUEUE: usize = 10_000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long `Drop` waits for the queue to drain.
const DROP_FLUSH: Duration = Duration::from_secs(1);
/// Frames and bytes written with one `write`.
const BATCH_FRAMES: usize = 256;
const BATCH_BYTES: usize = 64 * 1024;

// RFC 5424 §6 header field limits.
const HOSTNAME_MAX: usize = 255;
const APP_NAME_MAX: usize = 48;
const PROCID_MAX: usize = 128;
const MSGID_MAX: usize = 32;

/// Where and how to send records.
#[derive(Clone, Debug)]
pub struct SyslogConfig {
    /// The collector, as `host:port`.
    pub address: String,
    pub app_name: String,
    pub hostname: String,
    /// 0..=23; anything else falls back to [`DEFAULT_FACILITY`].
    pub facility: u8,
    /// Queue capacity in records; at least 1.
    pub queue: usize,
}

/// A running syslog sender. Dropping it flushes briefly, then stops the
/// thread.
pub struct SyslogSink {
    shared: Arc<Shared>,
    header: Header,
    address: String,
    thread: Option<JoinHandle<()>>,
}

/// The RFC 5424 header fields that are fixed for the life of a sink, already
/// sanitized.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Header {
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a frame is queued or the sink stops.
    work: Condvar,
    /// Signalled when frames leave the queue.
    drained: Condvar,
    capacity: usize,
    sent: AtomicU64,
    dropped: AtomicU64,
}

struct State {
    /// Frames not yet written, oldest first. The sender removes them only
    /// after a successful write.
    queue: VecDeque<Vec<u8>>,
    stop: bool,
}

/// Exponential backoff with jitter: 100 ms doubling to 5 s.
struct Backoff {
    next: Duration,
    rng: u64,
}

// === impl SyslogConfig ===

impl SyslogConfig {
    /// A config for `address` with app name `botward`, this host's name,
    /// facility `log audit` and the default queue.
    pub fn new(address: impl Into<String>) -> SyslogConfig {
        SyslogConfig {
            address: address.into(),
            app_name: "botward".into(),
            hostname: super::record::hostname(),
            facility: DEFAULT_FACILITY,
            queue: DEFAULT_QUEUE,
        }
    }
}

// === impl SyslogSink ===

impl SyslogSink {
    /// Starts the sender thread. Nothing connects until the first record.
    pub fn start(cfg: SyslogConfig) -> SyslogSink {
        let header = Header::new(&cfg);
        let capacity = cfg.queue.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                stop: false,
            }),
            work: Condvar::new(),
            drained: Condvar::new(),
            capacity,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let thread = {
            let shared = shared.clone();
            let address = cfg.address.clone();
            thread::Builder::new()
                .name("botward-syslog".into())
                .spawn(move || sender(&shared, &address))
        };
        let thread = match thread {
            Ok(t) => Some(t),
            Err(error) => {
                // Without the thread every record is dropped and counted, so
                // the failure shows in `dropped()` as well as here.
                warn!(%error, "Cannot start the syslog sender; records will be dropped");
                None
            }
        };
        SyslogSink {
            shared,
            header,
            address: cfg.address,
            thread,
        }
    }

    /// Queues one audit record (a JSON line, without its newline). `kind`
    /// becomes the MSGID and, with `decision`, picks the severity. Never
    /// blocks: when the queue is full the record is dropped and counted.
    pub fn send(&self, record_line: &str, kind: &str, decision: &str) {
        if self.thread.is_none() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let frame = format(
            &self.header,
            &super::record::now_rfc3339(),
            kind,
            decision,
            record_line,
        );
        let mut st = self.shared.lock();
        if st.queue.len() >= self.shared.capacity {
            drop(st);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        st.queue.push_back(frame);
        drop(st);
        self.shared.work.notify_one();
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records written to the collector's connection.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Waits until every queued record has been written, or `timeout` has
    /// passed. Returns whether the queue is empty.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while !st.queue.is_empty() {
            if st.stop || self.thread.is_none() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = crate::wait_timeout(&self.shared.drained, st, deadline - now).0;
        }
        true
    }
}

impl fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyslogSink")
            .field("address", &self.address)
            .field("sent", &self.sent())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        self.flush(DROP_FLUSH);
        let left = {
            let mut st = self.shared.lock();
            st.stop = true;
            st.queue.len()
        };
        self.shared.work.notify_all();
        if left > 0 {
            warn!(
                records = left,
                address = %self.address,
                "Stopping the syslog sender with records not yet sent"
            );
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// Sleeps for `d`, or until the sink stops. Returns whether it stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut st = self.lock();
        loop {
            if st.stop {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = crate::wait_timeout(&self.work, st, deadline - now).0;
        }
    }
}

// === impl Header ===

impl Header {
    fn new(cfg: &SyslogConfig) -> Header {
        let facility = if cfg.facility <= 23 {
            cfg.facility
        } else {
            warn!(
                facility = cfg.facility,
                "Syslog facility out of range 0..=23; using {DEFAULT_FACILITY}"
            );
            DEFAULT_FACILITY
        };
        Header {
            facility,
            hostname: header_field(&cfg.hostname, HOSTNAME_MAX),
            app_name: header_field(&cfg.app_name, APP_NAME_MAX),
            procid: header_field(&std::process::id().to_string(), PROCID_MAX),
        }
    }
}

// === impl Backoff ===

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: BACKOFF_MIN,
            rng: RandomState::new().build_hasher().finish() | 1,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The next delay: the current step less up to a quarter of it, so that
    /// sidecars restarted together do not reconnect in lockstep.
    fn delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(BACKOFF_MAX);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let quarter = step.as_micros() as u64 / 4;
        step - Duration::from_micros(self.rng % (quarter + 1))
    }
}

/// The sender thread: writes the head of the queue, removing frames only once
/// written.
fn sender(shared: &Shared, address: &str) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = Backoff::new();
    let mut buf = Vec::with_capacity(BATCH_BYTES);
    let mut failing = false;
    loop {
        let frames = {
            let mut st = shared.lock();
            while st.queue.is_empty() && !st.stop {
                st = crate::wait(&shared.work, st);
            }
            if st.stop {
                return;
            }
            buf.clear();
            let mut n = 0;
            for frame in &st.queue {
                if n == BATCH_FRAMES || (n > 0 && buf.len() + frame.len() > BATCH_BYTES) {
                    break;
                }
                buf.extend_from_slice(frame);
                n += 1;
            }
            n
        };

        if conn.as_ref().is_some_and(|c| !peer_open(c)) {
            conn = None;
        }
        let result = match &mut conn {
            Some(c) => c.write_all(&buf),
            None => connect(address).and_then(|mut c| {
                let r = c.write_all(&buf);
                conn = Some(c);
                r
            }),
        };
        match result {
            Ok(()) => {
                shared.lock().queue.drain(..frames);
                shared.sent.fetch_add(frames as u64, Ordering::Relaxed);
                shared.drained.notify_all();
                backoff.reset();
                if failing {
                    info!(address, "Syslog collector reachable again");
                    failing = false;
                }
            }
            Err(error) => {
                conn = None;
                if !failing {
                    warn!(%error, address, "Cannot send to the syslog collector; queueing and retrying");
                    failing = true;
                }
                if shared.sleep(backoff.delay()) {
                    return;
                }
            }
        }
    }
}

/// Connects to the first address of `address` that answers.
fn connect(address: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        "syslog address resolves to nothing",
    );
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether the collector still has its end open. A collector never sends
/// anything, so a readable socket means it has closed or reset.
fn peer_open(conn: &TcpStream) -> bool {
    if conn.set_nonblocking(true).is_err() {
        return false;
    }
    let open = match conn.peek(&mut [0u8; 1]) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    conn.set_nonblocking(false).is_ok() && open
}

/// The severity for a record: checkpoints are notices, otherwise the decision
/// decides.
fn severity(kind: &str, decision: &str) -> u8 {
    if kind == "checkpoint" || kind.starts_with("checkpoint.") {
        return 5;
    }
    match decision {
        "allow" => 6,
        "deny" => 4,
        "error" => 3,
        _ => 5,
    }
}

/// A header field as RFC 5424 allows it: printable US-ASCII (33..=126), at
/// most `max` characters, `-` when empty. Anything else becomes `_`.
fn header_field(value: &str, max: usize) -> String {
    let s: String = value
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// One octet-counted frame: `LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID
/// MSGID - MSG`, with the record line (minus any line ending) as MSG.
fn format(
    header: &Header,
    timestamp: &str,
    kind: &str,
    decision: &str,
    record_line: &str,
) -> Vec<u8> {
    let msg = record_line.trim_end_matches(['\n', '\r']);
    let pri = u16::from(header.facility) * 8 + u16::from(severity(kind, decision));
    let head = format!(
        "<{pri}>1 {timestamp} {} {} {} {} - ",
        header.hostname,
        header.app_name,
        header.procid,
        header_field(kind, MSGID_MAX),
    );
    let len = head.len() + msg.len();
    let mut frame = Vec::with_capacity(len + 8);
    frame.extend_from_slice(len.to_string().as_bytes());
    frame.push(b' ');
    frame.extend_from_slice(head.as_bytes());
    frame.extend_from_slice(msg.as_bytes());
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            facility: DEFAULT_FACILITY,
            hostname: "bot-host-01".into(),
            app_name: "botward".into(),
            procid: "4242".into(),
        }
    }

    /// Splits a frame into its length prefix and message, checking the count.
    fn unframe(frame: &[u8]) -> &str {
        let text = std::str::from_utf8(frame).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "octet count");
        msg
    }

    #[test]
    fn frame_is_octet_counted_rfc5424() {
        let line = r#"{"v":1,"seq":7,"kind":"secret.read","decision":"allow"}"#;
        let frame = format(
            &header(),
            "2025-01-02T03:04:05.678901Z",
            "secret.read",
            "allow",
            line,
        );
        assert_eq!(
            unframe(&frame),
            format!(
                "<110>1 2025-01-02T03:04:05.678901Z bot-host-01 botward 4242 secret.read - {line}"
            )
        );
        assert!(!frame.ends_with(b"\n"));
    }

    #[test]
    fn octet_count_is_bytes_not_chars() {
        let line = r#"{"bot":"Rechnungsprüfung-€"}"#;
        let frame = format(
            &header(),
            "2025-01-02T03:04:05.000000Z",
            "secret.read",
            "allow",
            line,
        );
        let msg = unframe(&frame);
        assert!(msg.ends_with(line));
        assert!(msg.len() > msg.chars().count());
    }

    #[test]
    fn trailing_newline_stays_out_of_the_frame() {
        let frame = format(&header(), "T", "health", "allow", "{\"seq\":1}\r\n");
        assert!(unframe(&frame).ends_with(" - {\"seq\":1}"));
    }

    #[test]
    fn severity_follows_decision_and_checkpoints_are_notices() {
        let table = [
            ("secret.read", "allow", 13 * 8 + 6),
            ("secret.read", "deny", 13 * 8 + 4),
            ("secret.read", "error", 13 * 8 + 3),
            ("checkpoint", "allow", 13 * 8 + 5),
            ("checkpoint.seal", "error", 13 * 8 + 5),
            ("health", "unknown", 13 * 8 + 5),
        ];
        for (kind, decision, pri) in table {
            let frame = format(&header(), "T", kind, decision, "{}");
            assert!(
                unframe(&frame).starts_with(&format!("<{pri}>1 ")),
                "{kind}/{decision}"
            );
        }
        let mut h = header();
        h.facility = 0;
        assert!(unframe(&format(&h, "T", "x", "error", "{}")).starts_with("<3>1 "));
        h.facility = 23;
        assert!(unframe(&format(&h, "T", "x", "allow", "{}")).starts_with("<190>1 "));
    }

    #[test]
    fn header_fields_are_printable_ascii_within_limits() {
        assert_eq!(header_field("secret.read", MSGID_MAX), "secret.read");
        assert_eq!(header_field("", MSGID_MAX), "-");
        assert_eq!(header_field("a b\tc\u{7f}d", MSGID_MAX), "a_b_c_d");
        assert_eq!(header_field("grüße", MSGID_MAX), "gr__e");
        assert_eq!(header_field(&"k".repeat(40), MSGID_MAX).len(), MSGID_MAX);
        assert_eq!(header_field(&"ü".repeat(60), APP_NAME_MAX), "_".repeat(48));
        assert_eq!(header_field(&"h".repeat(300), HOSTNAME_MAX).len(), 255);
    }

    #[test]
    fn unsafe_config_values_cannot_break_the_header() {
        let h = Header::new(&SyslogConfig {
            address: "127.0.0.1:1".into(),
            app_name: "bot ward".into(),
            hostname: String::new(),
            facility: 99,
            queue: 0,
        });
        assert_eq!(h.facility, DEFAULT_FACILITY);
        assert_eq!(h.app_name, "bot_ward");
        assert_eq!(h.hostname, "-");
        assert_eq!(h.procid, std::process::id().to_string());
        let msg = String::from_utf8(format(&h, "T", "a kind", "allow", "{}")).unwrap();
        let fields: Vec<&str> = msg.split(' ').collect();
        // LEN <PRI>1 TS HOST APP PROCID MSGID SD MSG
        assert_eq!(fields.len(), 9, "{msg}");
        assert_eq!(fields[4], "bot_ward");
        assert_eq!(fields[6], "a_kind");
    }

    #[test]
    fn backoff_doubles_to_five_seconds_with_jitter() {
        let mut b = Backoff::new();
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(b.delay());
        }
        assert!(steps[0] >= Duration::from_millis(75) && steps[0] <= BACKOFF_MIN);
        assert!(steps[1] >= Duration::from_millis(150) && steps[1] <= Duration::from_millis(200));
        for d in &steps[6..] {
            assert!(
                *d >= Duration::from_millis(3750) && *d <= BACKOFF_MAX,
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.delay() <= BACKOFF_MIN);
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        // A port that was just free: connections are refused and the sender
        // keeps retrying while the queue fills.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sink = SyslogSink::start(SyslogConfig {
            queue: 3,
            ..SyslogConfig::new(format!("127.0.0.1:{port}"))
        });
        let start = Instant::now();
        for seq in 0..10 {
            sink.send(&format!("{{\"seq\":{seq}}}"), "secret.read", "allow");
        }
        assert!(start.elapsed() < Duration::from_millis(500));
        assert_eq!(sink.dropped(), 7);
        assert_eq!(sink.sent(), 0);
        assert!(!sink.flush(Duration::from_millis(50)));
    }
}
