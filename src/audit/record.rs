//! The audit record: its fields, in the order of the contract, and the
//! values botward fills them with (request IDs, timestamps, the host name).

use std::sync::Arc;

use serde::Serialize;

/// One audit record, in the field order of the contract. Unknown values are
/// written as `null`. Nothing here may hold a secret value.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub v: u8,
    pub seq: u64,
    pub ts: String,
    pub id: String,
    pub host: Arc<str>,
    pub kind: &'static str,
    pub decision: Decision,
    pub status: u16,
    pub latency_us: u64,
    /// A verified, registered bot: the certificate chained to the client
    /// CA, was not revoked, and names a bot of the config. Nothing else is
    /// ever written here.
    pub bot: Option<String>,
    /// The bot name an unverified or unregistered certificate claimed, for
    /// the investigator; never counted as that bot's activity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_bot: Option<String>,
    pub cert: Option<CertInfo>,
    pub peer: Option<Peer>,
    pub secret: Option<String>,
    pub backend: Option<Backend>,
    pub reason: Option<String>,
    pub bytes: Option<u64>,
    pub anomaly: Option<serde_json::Value>,
    /// The elevation window a privileged read was allowed under: its
    /// request ID and approvers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elevation: Option<serde_json::Value>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub error: Option<String>,
    pub detail: Option<serde_json::Value>,
    /// The previous record's hash; set by the writer.
    pub prev: Option<String>,
    /// The MAC key epoch; set by the writer. `hash` and `mac` follow.
    pub epoch: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Error,
}

/// Where a request came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub transport: Transport,
    pub addr: Option<String>,
    pub pid: Option<i32>,
    pub uid: Option<u32>,
    pub exe: Option<String>,
    /// The Windows account's security identifier, where the kernel named
    /// the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// That account as `DOMAIN\name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Unix,
    /// A Windows named pipe.
    Pipe,
}

/// Where in Vault a secret was read. Lease IDs appear only as HMACs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub path: String,
    pub version: Option<u64>,
    pub lease_hmac: Option<String>,
}

/// Facts about a client certificate that go into the audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub sha256: String,
    pub serial: String,
    pub not_after: Option<String>,
}

impl Record {
    /// A record with every optional field unset.
    pub fn new(kind: &'static str, id: String, host: Arc<str>) -> Record {
        Record {
            v: 1,
            seq: 0,
            ts: now_rfc3339(),
            id,
            host,
            kind,
            decision: Decision::Error,
            status: 0,
            latency_us: 0,
            bot: None,
            claimed_bot: None,
            cert: None,
            peer: None,
            secret: None,
            backend: None,
            reason: None,
            bytes: None,
            anomaly: None,
            elevation: None,
            method: None,
            path: None,
            error: None,
            detail: None,
            prev: None,
            epoch: None,
        }
    }
}

/// A random request ID: 24 hex digits.
///
/// IDs are cut from a per-thread pool that is refilled from the operating
/// system's random source 32 IDs at a time: a `getrandom` call for each
/// request cost more than everything else in the ID. IDs label requests;
/// they grant nothing.
pub fn request_id() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    use std::cell::RefCell;
    const ID: usize = 12;
    const POOL: usize = 32 * ID;
    thread_local! {
        static IDS: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
    }
    let mut b = [0u8; ID];
    let drawn = IDS.with_borrow_mut(|(pool, used)| {
        if *used == POOL {
            if SystemRandom::new().fill(pool).is_err() {
                return false;
            }
            *used = 0;
        }
        b.copy_from_slice(&pool[*used..*used + ID]);
        *used += ID;
        true
    });
    if !drawn {
        // Never seen on Linux; fall back to the clock rather than fail.
        let t = jiff::Timestamp::now().as_nanosecond().to_le_bytes();
        b.copy_from_slice(&t[..ID]);
    }
    crate::text::hex(&b)
}

/// `s` cut to at most `max` bytes, on a character boundary: for fields
/// of the record that someone outside botward chose.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The source a TCP peer's refusals are summed under: every loopback
/// address is one source (a local process may bind any of 127.0.0.0/8), an
/// IPv6 address counts by its /64, and an IPv4 address by itself.
pub fn source_of_ip(ip: std::net::IpAddr) -> String {
    use std::net::IpAddr;
    match ip {
        ip if ip.is_loopback() => "loopback".into(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if v4.is_loopback() => "loopback".into(),
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The current time as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    rfc3339_micros(jiff::Timestamp::now())
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written digit by digit: a record's
/// timestamp is formatted on every request.
fn rfc3339_micros(ts: jiff::Timestamp) -> String {
    let dt = jiff::tz::Offset::UTC.to_datetime(ts);
    let Ok(year) = u32::try_from(dt.year()) else {
        return ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    };
    let mut out = [0u8; 27];
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, dt.month() as u32);
    put(8, 2, dt.day() as u32);
    put(11, 2, dt.hour() as u32);
    put(14, 2, dt.minute() as u32);
    put(17, 2, dt.second() as u32);
    put(20, 6, dt.subsec_nanosecond() as u32 / 1000);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        out[at] = c;
    }
    // Only ASCII digits and separators were written.
    String::from_utf8_lossy(&out).into_owned()
}

/// This host's name, for the `host` field.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_the_rfc3339_format_of_the_contract() {
        let fmt = |ts: jiff::Timestamp| ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let mut samples = vec![
            jiff::Timestamp::UNIX_EPOCH,
            "2026-02-28T23:59:59.999999999Z".parse().unwrap(),
            "2028-02-29T12:00:00.000001Z".parse().unwrap(),
            "0999-01-01T00:00:00Z".parse().unwrap(),
            "9999-12-30T12:00:00.5Z".parse().unwrap(),
            jiff::Timestamp::now(),
        ];
        // A spread of seconds and nanoseconds from 1970 to 2100.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 4_102_444_800) as i64;
            samples.push(jiff::Timestamp::new(secs, (x >> 33) as i32 % 1_000_000_000).unwrap());
        }
        for ts in samples {
            assert_eq!(rfc3339_micros(ts), fmt(ts), "{ts}");
        }
        assert_eq!(now_rfc3339().len(), 27);
    }
}
