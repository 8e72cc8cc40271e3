//! Reading the fields of a record held as a `serde_json::Value`, for the
//! auditor's tools: who a record belongs to, where its peer was, and its
//! values as text fit for a terminal.

use jiff::Timestamp;
use serde_json::Value;

/// The most characters of outside text shown in one message.
const MAX_SHOWN: usize = 4096;

/// The peer as one short label: `tcp 127.0.0.1:5555` or
/// `unix uid=1001 pid=42 exe=/opt/x`. Empty when the record has no peer.
pub fn peer_label(rec: &Value) -> String {
    let Some(peer) = rec.get("peer").filter(|p| p.is_object()) else {
        return String::new();
    };
    let mut label = str_field(peer, "transport").unwrap_or("?").to_string();
    if let Some(addr) = str_field(peer, "addr") {
        label.push(' ');
        label.push_str(addr);
    }
    for key in ["uid", "pid", "exe"] {
        let v = scalar(peer.get(key));
        if !v.is_empty() {
            label.push_str(&format!(" {key}={v}"));
        }
    }
    label
}

/// Whether a record is a host-level event rather than a bot's activity: a
/// refused handshake (`auth.failure`), a request refused as unauthenticated
/// (status 401), or any record with a `claimed_bot`. Such a record belongs to
/// no bot, whatever its `bot` field says.
pub fn host_level(rec: &Value) -> bool {
    unverified(
        str_field(rec, "kind").unwrap_or(""),
        rec.get("status").and_then(Value::as_u64),
        rec.get("claimed_bot").is_some_and(|c| !c.is_null()),
    )
}

/// [`host_level`] from the fields it looks at, for readers that do not hold
/// a `Value`.
pub fn unverified(kind: &str, status: Option<u64>, has_claim: bool) -> bool {
    kind == "auth.failure" || status == Some(401) || has_claim
}

/// The record's verified bot: `bot`, unless the record is host-level.
pub fn verified_bot(rec: &Value) -> Option<&str> {
    str_field(rec, "bot").filter(|_| !host_level(rec))
}

/// The name a host-level record's certificate claimed: `claimed_bot`, or
/// `bot` in logs written before `claimed_bot` existed. Never an identity.
pub fn claimed_bot(rec: &Value) -> Option<&str> {
    if !host_level(rec) {
        return None;
    }
    str_field(rec, "claimed_bot").or_else(|| str_field(rec, "bot"))
}

/// The BOT cell of a record: its verified bot, or `claimed: NAME` for a
/// host-level record that named one; empty when neither.
pub fn bot_label(rec: &Value) -> String {
    match (verified_bot(rec), claimed_bot(rec)) {
        (Some(bot), _) => bot.to_string(),
        (None, Some(claim)) => format!("claimed: {claim}"),
        (None, None) => String::new(),
    }
}

/// `rec[field]` when it is a string.
pub(crate) fn str_field<'a>(rec: &'a Value, field: &str) -> Option<&'a str> {
    rec.get(field).and_then(Value::as_str)
}

/// The record's `ts`, parsed.
pub(crate) fn record_time(rec: &Value) -> Option<Timestamp> {
    str_field(rec, "ts").and_then(|s| s.parse::<Timestamp>().ok())
}

/// A scalar as text: strings as they are, numbers and booleans printed,
/// null or absent as empty, objects and arrays as compact JSON.
pub(crate) fn scalar(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Text from a log, a path or an anchor file, fit for a terminal: control
/// and layout characters escaped as [`crate::text::escape`] does (a record
/// cannot move the cursor or forge a line), cut at [`MAX_SHOWN`]
/// characters.
pub fn printable(s: &str) -> String {
    let cut: String = s.chars().take(MAX_SHOWN).collect();
    let mut out = crate::text::escape(&cut).into_owned();
    if s.chars().nth(MAX_SHOWN).is_some() {
        out.push('…');
    }
    out
}
