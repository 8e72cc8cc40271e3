//! Records of connections refused before a request: summed per source and
//! reason while the peer has proved nothing, in full once it has.

use std::time::Instant;

use tracing::{debug, info, warn};

use super::Shared;
use crate::audit::{Decision, Peer, Record, Transport};
use crate::identity::PeerIdentity;
use crate::refusals;

/// Whether a refusal is summed with others of its source and reason.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Summed {
    /// Before the peer proved anything: anyone can cause these.
    Yes,
    /// After a certificate verified: each is recorded in full, with its
    /// certificate and process.
    No,
}

impl Shared {
    /// Writes the summaries of refusal windows that have ended (or all of
    /// them, at shutdown).
    pub async fn flush_refusals(&self, all: bool) {
        let due = if all {
            self.refusals.drain()
        } else {
            self.refusals.due(Instant::now())
        };
        for s in due {
            let mut rec = Record::new(
                "auth.failure",
                crate::audit::request_id(),
                self.audit.host(),
            );
            rec.decision = Decision::Deny;
            rec.reason = Some(s.key.reason.to_owned());
            rec.peer = Some(match s.key.transport {
                Transport::Tcp => Peer {
                    transport: Transport::Tcp,
                    addr: Some(s.key.source.clone()),
                    ..Peer::default()
                },
                Transport::Unix => Peer {
                    transport: Transport::Unix,
                    uid: s
                        .key
                        .source
                        .strip_prefix("uid:")
                        .and_then(|u| u.parse().ok()),
                    ..Peer::default()
                },
                Transport::Pipe => Peer {
                    transport: Transport::Pipe,
                    pid: s
                        .key
                        .source
                        .strip_prefix("pid:")
                        .and_then(|p| p.parse().ok()),
                    ..Peer::default()
                },
            });
            // One claimed name for all of them is that name's, as a claim.
            if let [one] = s.claims.as_slice() {
                rec.claimed_bot = Some(one.clone());
            }
            rec.detail = Some(serde_json::json!({"aggregated": {
                "count": s.count,
                "first": s.first,
                "last": s.last,
                "window_s": refusals::WINDOW.as_secs(),
                "source": s.key.source,
                "claims": s.claims,
            }}));
            if self.audit.write(rec).await.is_err() {
                warn!("Cannot write the audit summary of refused connections");
            }
        }
    }
}

/// Audits a connection refused before authentication, with whatever the
/// verifier saw. Such refusals are summed per source and reason
/// ([`refusals`]): the first of a window is written in full here, the rest
/// are counted into its summary.
pub async fn auth_failure(
    shared: &Shared,
    peer: Peer,
    seen: Option<PeerIdentity>,
    reason: &'static str,
    message: String,
    started: Instant,
    summed: Summed,
) {
    let ts = crate::audit::now_rfc3339();
    let key = refusals::Key {
        transport: peer.transport,
        source: source_of(&peer),
        reason,
    };
    let claim = seen.as_ref().and_then(|p| p.bot.as_deref());
    if summed == Summed::Yes && !shared.refusals.note(key, Instant::now(), &ts, claim) {
        debug!(reason, "Connection refused (counted)");
        return;
    }
    let mut rec = Record::new(
        "auth.failure",
        crate::audit::request_id(),
        shared.audit.host(),
    );
    rec.ts = ts;
    rec.decision = Decision::Deny;
    rec.status = 0;
    rec.reason = Some(reason.to_owned());
    rec.error = Some(crate::audit::truncate(&message, 256));
    rec.peer = Some(peer);
    // The connection was refused, so whatever the certificate names is a
    // claim, never an identity.
    if let Some(p) = seen {
        rec.claimed_bot = p.bot;
        rec.cert = Some(p.cert);
    }
    rec.latency_us = started.elapsed().as_micros() as u64;
    info!(reason, "TLS handshake refused");
    if shared.audit.write(rec).await.is_err() {
        warn!("Cannot write audit record for a refused handshake");
    }
}

/// What refusals are summed by: the IP address on TCP (every port of a
/// host is one source), the uid on the unix socket, the pid on a named
/// pipe (refusals come before the process's account is read).
pub(super) fn source_of(peer: &Peer) -> String {
    match peer.transport {
        Transport::Tcp => peer
            .addr
            .as_deref()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| refusals::source_of_ip(a.ip()))
            .unwrap_or_else(|| "tcp".into()),
        Transport::Unix => match peer.uid {
            Some(uid) => format!("uid:{uid}"),
            None => "unix".into(),
        },
        Transport::Pipe => match peer.pid {
            Some(pid) => format!("pid:{pid}"),
            None => "pipe".into(),
        },
    }
}
