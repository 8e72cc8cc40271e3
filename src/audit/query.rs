//! `botward audit query`: filter audit records and print them as an aligned
//! table, JSON Lines, CSV (RFC 4180) or OCSF events.
//!
//! Records are handled as `serde_json::Value`, so the query works on logs
//! written by any record version that keeps the field names of the contract.
//! A record that lacks a field simply does not match a filter on it.
//!
//! `bot` is a verified identity only. A host-level record ([`host_level`]: a
//! refused handshake or an unauthenticated request) belongs to no bot,
//! whatever its `bot` field says (logs written before `claimed_bot` existed
//! put the certificate's name there): `--bot` never selects it, and the name
//! it carries is shown and filtered as a claim (`--claimed-bot`).
//!
//! The table and CSV escape control characters ([`crate::text::escape`]), so
//! a record is one line; JSON Lines and OCSF keep every value, JSON-escaped.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::Value;

pub use super::fields::{bot_label, claimed_bot, host_level, peer_label, unverified, verified_bot};
use super::fields::{record_time, scalar, str_field};
use super::ocsf;

/// Widest a table column may grow; longer values end in an ellipsis.
const MAX_COLUMN: usize = 40;

const TABLE_HEADER: [&str; 9] = [
    "TS", "SEQ", "KIND", "DECISION", "STATUS", "BOT", "SECRET", "REASON", "PEER",
];

const CSV_HEADER: [&str; 20] = [
    "ts",
    "seq",
    "id",
    "host",
    "kind",
    "decision",
    "status",
    "latency_us",
    "bot",
    "secret",
    "reason",
    "peer_transport",
    "peer_addr",
    "peer_uid",
    "peer_pid",
    "peer_exe",
    "cert_sha256",
    "backend_path",
    "backend_version",
    "claimed_bot",
];

/// Which records to keep. Every field that is set must match; an empty
/// filter keeps everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// The verified bot: host-level records never match.
    pub bot: Option<String>,
    /// The name a host-level record's certificate claimed.
    pub claimed_bot: Option<String>,
    pub secret: Option<String>,
    pub decision: Option<String>,
    pub kind: Option<String>,
    /// Keep records at or after this instant.
    pub since: Option<Timestamp>,
    /// Keep records strictly before this instant.
    pub until: Option<Timestamp>,
}

/// Output format of `audit query`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Jsonl,
    Csv,
    Ocsf,
}

// === impl Filter ===

impl Filter {
    /// Whether `rec` passes the filter. String fields compare exactly. Time
    /// bounds compare the parsed `ts`; a record whose `ts` cannot be parsed
    /// never passes a time bound.
    pub fn matches(&self, rec: &Value) -> bool {
        let same = |want: &Option<String>, field: &str| match want {
            None => true,
            Some(w) => str_field(rec, field) == Some(w.as_str()),
        };
        let named = |want: &Option<String>, name: Option<&str>| match want {
            None => true,
            Some(w) => name == Some(w.as_str()),
        };
        if !(named(&self.bot, verified_bot(rec))
            && named(&self.claimed_bot, claimed_bot(rec))
            && same(&self.secret, "secret")
            && same(&self.decision, "decision")
            && same(&self.kind, "kind"))
        {
            return false;
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(ts) = record_time(rec) else {
            return false;
        };
        self.since.is_none_or(|since| ts >= since) && self.until.is_none_or(|until| ts < until)
    }
}

// === impl Format ===

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "table" => Ok(Format::Table),
            "jsonl" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "ocsf" => Ok(Format::Ocsf),
            other => Err(format!(
                "unknown format {other:?}: expected table, jsonl, csv or ocsf"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Ocsf => "ocsf",
        })
    }
}

/// Parses a `--since`/`--until` argument: RFC 3339 with `Z` or an offset
/// (`2026-11-27T10:00:00Z`, `2026-11-27T12:00:00+02:00`), or a bare date
/// (`2026-11-27`), which means midnight UTC.
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    // Only a bare date: jiff's date parser would also take a date-time and
    // drop its time of day.
    let bare_date = s.len() == 10 && !s.contains(['T', 't', ' ']);
    if bare_date {
        if let Ok(zoned) = s.parse::<Date>().and_then(|d| d.to_zoned(TimeZone::UTC)) {
            return Ok(zoned.timestamp());
        }
    }
    if s.parse::<jiff::civil::DateTime>().is_ok() {
        return Err(format!(
            "invalid time {s:?}: no time zone; add Z for UTC or an offset such as +02:00 \
             (RFC 3339, e.g. 2026-11-27T10:00:00Z)"
        ));
    }
    Err(format!(
        "invalid time {s:?}: expected RFC 3339 with a zone (2026-11-27T10:00:00Z, \
         2026-11-27T12:00:00+02:00) or a date (2026-11-27, midnight UTC)"
    ))
}

/// Writes the records that pass `filter` to `out` in `format` and returns how
/// many were written. The table format holds the selected rows in memory to
/// size its columns; the other formats stream.
pub fn write(
    records: impl IntoIterator<Item = Value>,
    filter: &Filter,
    format: Format,
    out: &mut dyn Write,
) -> io::Result<usize> {
    let selected = records.into_iter().filter(|r| filter.matches(r));
    match format {
        Format::Table => write_table(selected, out),
        Format::Jsonl => write_lines(selected, out, |r| r),
        Format::Ocsf => write_lines(selected, out, |r| ocsf::to_ocsf(&r)),
        Format::Csv => write_csv(selected, out),
    }
}

fn write_lines(
    records: impl Iterator<Item = Value>,
    out: &mut dyn Write,
    map: impl Fn(Value) -> Value,
) -> io::Result<usize> {
    let mut n = 0;
    for rec in records {
        let line = serde_json::to_string(&map(rec)).map_err(io::Error::other)?;
        out.write_all(crate::text::escape_json(&line).as_bytes())?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

fn write_table(records: impl Iterator<Item = Value>, out: &mut dyn Write) -> io::Result<usize> {
    let rows: Vec<[String; 9]> = records
        .map(|rec| {
            let cell = |field: &str| table_cell(&scalar(rec.get(field)));
            [
                cell("ts"),
                cell("seq"),
                cell("kind"),
                cell("decision"),
                cell("status"),
                table_cell(&bot_label(&rec)),
                cell("secret"),
                cell("reason"),
                table_cell(&peer_label(&rec)),
            ]
        })
        .collect();

    let mut widths = TABLE_HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    let header = TABLE_HEADER.map(String::from);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = w - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(rows.len())
}

/// One table cell: `-` for empty, control characters escaped so that a
/// record cannot move the terminal's cursor, cut at [`MAX_COLUMN`] chars.
fn table_cell(s: &str) -> String {
    if s.is_empty() {
        return "-".to_string();
    }
    let clean = crate::text::escape(s);
    if clean.chars().count() <= MAX_COLUMN {
        return clean.into_owned();
    }
    let mut cut: String = clean.chars().take(MAX_COLUMN - 1).collect();
    cut.push('…');
    cut
}

fn write_csv(records: impl Iterator<Item = Value>, out: &mut dyn Write) -> io::Result<usize> {
    write_csv_row(out, CSV_HEADER.iter().copied())?;
    let mut n = 0;
    for rec in records {
        let peer = rec.get("peer").unwrap_or(&Value::Null);
        let cert = rec.get("cert").unwrap_or(&Value::Null);
        let backend = rec.get("backend").unwrap_or(&Value::Null);
        let fields = [
            scalar(rec.get("ts")),
            scalar(rec.get("seq")),
            scalar(rec.get("id")),
            scalar(rec.get("host")),
            scalar(rec.get("kind")),
            scalar(rec.get("decision")),
            scalar(rec.get("status")),
            scalar(rec.get("latency_us")),
            verified_bot(&rec).unwrap_or("").to_string(),
            scalar(rec.get("secret")),
            scalar(rec.get("reason")),
            scalar(peer.get("transport")),
            scalar(peer.get("addr")),
            scalar(peer.get("uid")),
            scalar(peer.get("pid")),
            scalar(peer.get("exe")),
            scalar(cert.get("sha256")),
            scalar(backend.get("path")),
            scalar(backend.get("version")),
            claimed_bot(&rec).unwrap_or("").to_string(),
        ];
        write_csv_row(out, fields.iter().map(|f| crate::text::escape(f)))?;
        n += 1;
    }
    Ok(n)
}

/// One CSV row, CRLF-terminated as RFC 4180 asks.
fn write_csv_row<S: AsRef<str>>(
    out: &mut dyn Write,
    fields: impl Iterator<Item = S>,
) -> io::Result<()> {
    let mut line = String::new();
    for (i, f) in fields.enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&csv_field(f.as_ref()));
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(seq: u64, ts: &str, bot: Option<&str>, decision: &str) -> Value {
        json!({
            "v": 1, "seq": seq, "ts": ts, "id": format!("r{seq}"), "host": "rpa-01",
            "kind": "secret.read", "decision": decision, "status": 200, "latency_us": 812,
            "bot": bot,
            "cert": {"sha256": "ab".repeat(32), "serial": "01", "not_after": "2027-01-01T00:00:00Z"},
            "peer": {"transport": "unix", "addr": null, "pid": 42, "uid": 1001, "exe": "/opt/x"},
            "secret": "erp-db",
            "backend": {"path": "kv/data/erp", "version": 3, "lease_hmac": null},
            "reason": null, "bytes": 120, "anomaly": null,
            "method": "GET", "path": "/v1/secrets/erp-db", "error": null, "detail": null,
            "prev": null, "mac": "00ff"
        })
    }

    fn run(records: Vec<Value>, filter: &Filter, format: Format) -> (usize, String) {
        let mut out = Vec::new();
        let n = write(records, filter, format, &mut out).unwrap();
        (n, String::from_utf8(out).unwrap())
    }

    #[test]
    fn empty_filter_matches_everything() {
        let f = Filter::default();
        assert!(f.matches(&record(0, "2026-11-27T10:00:00.000000Z", None, "allow")));
        assert!(f.matches(&json!({})));
    }

    #[test]
    fn filter_compares_fields_exactly() {
        let rec = record(
            0,
            "2026-11-27T10:00:00.000000Z",
            Some("invoice-bot"),
            "deny",
        );
        let f = |f: Filter| f.matches(&rec);
        assert!(f(Filter {
            bot: Some("invoice-bot".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            bot: Some("invoice".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            decision: Some("deny".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            decision: Some("allow".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            secret: Some("erp-db".into()),
            kind: Some("secret.read".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            kind: Some("whoami".into()),
            ..Filter::default()
        }));
    }

    #[test]
    fn filter_on_bot_skips_records_without_bot() {
        let rec = record(0, "2026-11-27T10:00:00.000000Z", None, "deny");
        assert!(!Filter {
            bot: Some("x".into()),
            ..Filter::default()
        }
        .matches(&rec));
    }

    #[test]
    fn since_is_inclusive_and_until_exclusive() {
        let at = |ts: &str| record(0, ts, Some("b"), "allow");
        let f = Filter {
            since: Some(parse_time("2026-11-27T10:00:00Z").unwrap()),
            until: Some(parse_time("2026-11-27T11:00:00Z").unwrap()),
            ..Filter::default()
        };
        assert!(!f.matches(&at("2026-11-27T09:59:59.999999Z")));
        assert!(f.matches(&at("2026-11-27T10:00:00.000000Z")));
        assert!(f.matches(&at("2026-11-27T10:59:59.999999Z")));
        assert!(!f.matches(&at("2026-11-27T11:00:00.000000Z")));
    }

    #[test]
    fn time_bound_rejects_records_with_unreadable_ts() {
        let f = Filter {
            since: Some(Timestamp::UNIX_EPOCH),
            ..Filter::default()
        };
        assert!(!f.matches(&record(0, "yesterday", None, "allow")));
        assert!(!f.matches(&json!({"seq": 1})));
    }

    #[test]
    fn parse_time_accepts_rfc3339_offsets_and_dates() {
        let z = parse_time("2026-11-27T10:00:00Z").unwrap();
        assert_eq!(parse_time("2026-11-27T12:00:00+02:00").unwrap(), z);
        assert_eq!(parse_time("2026-11-27T10:00:00.000000Z").unwrap(), z);
        assert_eq!(
            parse_time("2026-11-27").unwrap(),
            parse_time("2026-11-27T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn parse_time_explains_what_it_expects() {
        for bad in [
            "",
            "2026-11-27T10:00:00",
            "2026-11-27 10:00",
            "27/11/2026",
            "2026-13-01",
            "now",
        ] {
            let err = parse_time(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn format_parses_its_names() {
        for f in [Format::Table, Format::Jsonl, Format::Csv, Format::Ocsf] {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
        assert!("xml".parse::<Format>().unwrap_err().contains("xml"));
    }

    #[test]
    fn table_has_header_and_aligned_columns() {
        let recs = vec![
            record(0, "2026-11-27T10:00:00.000000Z", Some("a"), "allow"),
            record(
                1,
                "2026-11-27T10:00:01.000000Z",
                Some("a-much-longer-bot-name"),
                "deny",
            ),
        ];
        let (n, text) = run(recs, &Filter::default(), Format::Table);
        assert_eq!(n, 2);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TS  "), "{}", lines[0]);
        for col in TABLE_HEADER {
            assert!(lines[0].contains(col));
        }
        let secret_col = lines[0].find("SECRET").unwrap();
        assert_eq!(lines[1].find("erp-db"), Some(secret_col));
        assert_eq!(lines[2].find("erp-db"), Some(secret_col));
        assert!(lines[1].ends_with("unix uid=1001 pid=42 exe=/opt/x"));
        assert!(lines[1].contains(" - "), "null reason shows as -");
    }

    #[test]
    fn table_cells_are_capped_and_control_chars_escaped() {
        let long = "x".repeat(100);
        let cell = table_cell(&long);
        assert_eq!(cell.chars().count(), MAX_COLUMN);
        assert!(cell.ends_with('…'));
        assert_eq!(table_cell("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(table_cell("/opt/x\n\u{9b}31m"), "/opt/x\\n\\u{9b}31m");
    }

    #[test]
    fn csv_escapes_control_characters_one_record_one_line() {
        let mut rec = record(0, "2026-11-27T10:00:00.000000Z", Some("a"), "allow");
        rec["peer"]["exe"] = json!("/opt/x\n\u{1b}[31mFAKE LINE");
        let (_, csv) = run(vec![rec], &Filter::default(), Format::Csv);
        assert_eq!(csv.split("\r\n").count(), 3, "{csv}");
        assert!(csv.contains(",/opt/x\\n\\x1b[31mFAKE LINE,"), "{csv}");
    }

    /// An `auth.failure` as 909baa2 wrote it: the unverified certificate's
    /// name in `bot`.
    fn old_auth_failure(claim: &str) -> Value {
        json!({
            "v": 1, "seq": 9, "ts": "2026-11-27T10:00:09.000000Z", "id": "a9", "host": "rpa-01",
            "kind": "auth.failure", "decision": "deny", "status": 0, "latency_us": 90,
            "bot": claim, "cert": {"sha256": "cd".repeat(32), "serial": "99", "not_after": null},
            "peer": {"transport": "tcp", "addr": "203.0.113.7:40000", "pid": null, "uid": null, "exe": null},
            "secret": null, "reason": "unknown_issuer"
        })
    }

    #[test]
    fn unverified_records_are_host_level_whatever_their_bot_says() {
        let old = old_auth_failure("invoice-bot");
        let mut new = old.clone();
        new["bot"] = Value::Null;
        new["claimed_bot"] = json!("invoice-bot");
        let mut revoked = record(
            3,
            "2026-11-27T10:00:03.000000Z",
            Some("invoice-bot"),
            "deny",
        );
        revoked["status"] = json!(401);
        revoked["reason"] = json!("certificate_revoked");
        for rec in [&old, &new, &revoked] {
            assert!(host_level(rec), "{rec}");
            assert_eq!(verified_bot(rec), None);
            assert_eq!(claimed_bot(rec), Some("invoice-bot"));
            assert_eq!(bot_label(rec), "claimed: invoice-bot");
        }
        let real = record(
            1,
            "2026-11-27T10:00:01.000000Z",
            Some("invoice-bot"),
            "deny",
        );
        assert!(!host_level(&real));
        assert_eq!(verified_bot(&real), Some("invoice-bot"));
        assert_eq!(claimed_bot(&real), None);
        let mut anonymous = old.clone();
        anonymous["bot"] = Value::Null;
        assert_eq!(bot_label(&anonymous), "");
    }

    #[test]
    fn bot_filter_selects_verified_records_and_claimed_bot_the_claims() {
        let real = record(
            1,
            "2026-11-27T10:00:01.000000Z",
            Some("invoice-bot"),
            "deny",
        );
        let old = old_auth_failure("invoice-bot");
        let mut new = old.clone();
        new["bot"] = Value::Null;
        new["claimed_bot"] = json!("invoice-bot");
        let by_bot = Filter {
            bot: Some("invoice-bot".into()),
            ..Filter::default()
        };
        let by_claim = Filter {
            claimed_bot: Some("invoice-bot".into()),
            ..Filter::default()
        };
        assert!(by_bot.matches(&real));
        assert!(!by_bot.matches(&old) && !by_bot.matches(&new));
        assert!(!by_claim.matches(&real));
        assert!(by_claim.matches(&old) && by_claim.matches(&new));
    }

    #[test]
    fn table_and_csv_show_a_claim_as_a_claim_on_one_line() {
        let mut old = old_auth_failure("invoice-bot");
        old["peer"]["exe"] = json!("/opt/x\n\u{1b}[31mFAKE LINE");
        old["peer"]["addr"] = Value::Null;
        let (_, table) = run(vec![old.clone()], &Filter::default(), Format::Table);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(table.contains("claimed: invoice-bot"), "{table}");
        assert!(table.contains("exe=/opt/x\\n\\x1b[31mFAKE LINE"), "{table}");
        let (_, csv) = run(vec![old], &Filter::default(), Format::Csv);
        let rows: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(rows.len(), 3, "{csv}");
        assert!(rows[0].ends_with(",backend_version,claimed_bot"));
        assert!(
            rows[1].contains(",deny,0,90,,,unknown_issuer,"),
            "bot is empty: {}",
            rows[1]
        );
        assert!(rows[1].ends_with(",invoice-bot"), "{}", rows[1]);
        assert!(
            rows[1].contains("/opt/x\\n\\x1b[31mFAKE LINE"),
            "{}",
            rows[1]
        );
        assert!(!csv.contains('\u{1b}'));
    }

    #[test]
    fn jsonl_escapes_what_serde_json_leaves_raw() {
        let mut rec = record(0, "2026-11-27T10:00:00.000000Z", Some("a"), "allow");
        rec["peer"]["exe"] = json!("/opt/\u{9b}2J\u{7f}");
        let (_, text) = run(vec![rec.clone()], &Filter::default(), Format::Jsonl);
        assert!(text.contains("/opt/\\u009b2J\\u007f"), "{text}");
        assert_eq!(serde_json::from_str::<Value>(text.trim_end()).unwrap(), rec);
    }

    #[test]
    fn peer_label_for_tcp_and_unix() {
        let tcp = json!({"peer": {"transport": "tcp", "addr": "127.0.0.1:5555", "pid": null, "uid": null, "exe": null}});
        assert_eq!(peer_label(&tcp), "tcp 127.0.0.1:5555");
        let unix = record(0, "2026-11-27T10:00:00.000000Z", None, "allow");
        assert_eq!(peer_label(&unix), "unix uid=1001 pid=42 exe=/opt/x");
        assert_eq!(peer_label(&json!({"peer": null})), "");
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field("cr\rx"), "\"cr\rx\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn csv_has_header_and_empty_nulls() {
        let mut rec = record(7, "2026-11-27T10:00:00.000000Z", Some("b,1"), "allow");
        rec["peer"]["exe"] = json!("/opt/\"odd\"");
        let (n, text) = run(vec![rec], &Filter::default(), Format::Csv);
        assert_eq!(n, 1);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(
            lines[1],
            "2026-11-27T10:00:00.000000Z,7,r7,rpa-01,secret.read,allow,200,812,\"b,1\",erp-db,,\
             unix,,1001,42,\"/opt/\"\"odd\"\"\",abababababababababababababababababababababababababababababababab,kv/data/erp,3,"
        );
        assert_eq!(lines[2], "");
    }

    #[test]
    fn jsonl_writes_the_original_record_and_counts_only_matches() {
        let recs = vec![
            record(0, "2026-11-27T10:00:00.000000Z", Some("a"), "allow"),
            record(1, "2026-11-27T10:00:01.000000Z", Some("b"), "deny"),
        ];
        let f = Filter {
            decision: Some("deny".into()),
            ..Filter::default()
        };
        let (n, text) = run(recs.clone(), &f, Format::Jsonl);
        assert_eq!(n, 1);
        let back: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(back, recs[1]);
    }

    #[test]
    fn ocsf_writes_one_event_per_line() {
        let recs = vec![record(0, "2026-11-27T10:00:00.000000Z", Some("a"), "allow")];
        let (n, text) = run(recs, &Filter::default(), Format::Ocsf);
        assert_eq!(n, 1);
        let ev: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(ev["class_uid"], 6003);
    }
}
