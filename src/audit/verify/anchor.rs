//! Anchors: copies of records kept off the host, which a log must still
//! hold. They are what tells a log cut back to an earlier checkpoint from a
//! live log, and a chain rewritten with keys stolen from the host from the
//! chain botward wrote.
//!
//! An anchor file holds one record per line, in any of the forms the
//! records leave the host in:
//!
//! - the record's own line, as in the log (`{"v":1,"seq":...}`), e.g.
//!   `grep '"kind":"checkpoint"' audit.jsonl`;
//! - an RFC 5424 syslog message as the sink sends it
//!   (`<109>1 TIMESTAMP HOST botward PID checkpoint - {"v":1,...}`), one per
//!   line as a collector stores it (rsyslog's `%rawmsg%`), or octet-counted
//!   (RFC 6587, `<len> <109>1 ...`) as captured off the wire, with or
//!   without newlines between frames;
//! - any other syslog file line that ends in the record (rsyslog's default
//!   `Dec  1 19:24:06 host botward[812]: {"v":1,...}`).
//!
//! Every non-empty line must hold a record whose hash matches its content:
//! anything else is an error, never skipped, since a skipped anchor is a
//! check silently not made. Copies sent twice (the sink delivers at least
//! once) count once. Anchors are trusted like the seed: keep them where an
//! intruder on the host cannot write.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::path::Path;

use serde::Deserialize;

use crate::audit::chain;
use crate::audit::fields::printable;

/// The longest line or frame read from an anchor file.
const MAX_LINE: usize = 16 << 20;

/// One record kept off the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
    /// The host the record names; `None` applies to any log.
    pub host: Option<String>,
    /// The first public key of the record's chain, as a checkpoint names
    /// it; `None` for other records.
    pub chain: Option<String>,
    /// Where it was read, for messages (`FILE:LINE`), already printable.
    pub source: String,
}

/// The anchors of one or more files, by seq.
#[derive(Debug, Default)]
pub struct Anchors {
    by_seq: BTreeMap<u64, Vec<Anchor>>,
    files: usize,
}

#[derive(Deserialize)]
struct Fields<'a> {
    seq: u64,
    #[serde(borrow)]
    host: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    /// Free-form but for checkpoints, so not parsed further here.
    detail: Option<serde_json::Value>,
}

// === impl Anchors ===

impl Anchors {
    /// Reads anchor files. Any line that is not a record, and two different
    /// records of one host with the same seq, are errors.
    pub fn read(paths: &[impl AsRef<Path>]) -> Result<Anchors, String> {
        let mut anchors = Anchors::default();
        for p in paths {
            let p = p.as_ref();
            let name = printable(&p.display().to_string());
            let file = std::fs::File::open(p).map_err(|e| format!("anchor file {name}: {e}"))?;
            let mut records = 0;
            read_messages(io::BufReader::new(file), |at, msg| {
                let source = format!("{name}:{at}");
                let anchor = parse_message(msg, &source)
                    .map_err(|e| Malformed::Line(format!("{source}: {e}")))?;
                records += 1;
                anchors.add(anchor)
            })
            .map_err(|e| match e {
                Malformed::Io(e) => format!("anchor file {name}: {e}"),
                Malformed::Line(e) => e,
            })?;
            if records == 0 {
                return Err(format!("anchor file {name} holds no records"));
            }
            anchors.files += 1;
        }
        Ok(anchors)
    }

    /// Adds one anchor; a duplicate is dropped. Two different records with
    /// one seq, host and chain are an error.
    pub fn add(&mut self, anchor: Anchor) -> Result<(), Malformed> {
        let same_seq = self.by_seq.entry(anchor.seq).or_default();
        match same_seq
            .iter()
            .find(|a| a.host == anchor.host && a.chain == anchor.chain)
        {
            Some(a) if a.hash == anchor.hash => Ok(()),
            Some(a) => Err(Malformed::Line(format!(
                "{} and {} are different records with seq {} of the same host and chain: the anchors hold more than one chain; give only this log's",
                a.source, anchor.source, anchor.seq
            ))),
            None => {
                same_seq.push(anchor);
                Ok(())
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Anchors, duplicates not counted.
    pub fn len(&self) -> usize {
        self.by_seq.values().map(Vec::len).sum()
    }

    /// Files read.
    pub fn files(&self) -> usize {
        self.files
    }

    pub fn contains_seq(&self, seq: u64) -> bool {
        self.by_seq.contains_key(&seq)
    }

    /// Every anchor, by seq.
    pub fn iter(&self) -> impl Iterator<Item = &Anchor> {
        self.by_seq.values().flatten()
    }
}

/// Why an anchor file cannot be read.
#[derive(Debug)]
pub enum Malformed {
    Io(io::Error),
    Line(String),
}

impl From<io::Error> for Malformed {
    fn from(e: io::Error) -> Malformed {
        Malformed::Io(e)
    }
}

/// Calls `each` with every message of a stream and where it is (`LINE` or
/// `LINE, frame N`): lines, and octet-counted frames within lines.
pub fn read_messages(
    mut reader: impl BufRead,
    mut each: impl FnMut(&str, &[u8]) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    let mut line = Vec::new();
    let mut line_no = 0usize;
    loop {
        line.clear();
        let n = io::Read::take(&mut reader, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        if line.len() > MAX_LINE {
            return Err(Malformed::Line(format!(
                "line {line_no}: longer than {MAX_LINE} bytes"
            )));
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if octet_count(text).is_none() {
            each(&line_no.to_string(), text)?;
            continue;
        }
        let mut rest = text;
        let mut frame = 0;
        while !rest.is_empty() {
            frame += 1;
            let at = format!("{line_no}, frame {frame}");
            let Some((len, body)) = octet_count(rest) else {
                return Err(Malformed::Line(format!(
                    "{at}: not an octet-counted syslog frame"
                )));
            };
            if body.len() < len {
                return Err(Malformed::Line(format!(
                    "{at}: the frame counts {len} bytes but {} follow",
                    body.len()
                )));
            }
            each(&at, &body[..len])?;
            rest = body[len..].trim_ascii_start();
        }
    }
}

/// `<len> <...` at the start of a frame: the length and what follows the
/// space.
fn octet_count(s: &[u8]) -> Option<(usize, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || s.get(digits) != Some(&b' ') || s.get(digits + 1) != Some(&b'<')
    {
        return None;
    }
    let len = std::str::from_utf8(&s[..digits]).ok()?.parse().ok()?;
    Some((len, &s[digits + 1..]))
}

/// The anchor in one message: a record line, or a syslog message holding
/// one.
pub fn parse_message(msg: &[u8], source: &str) -> Result<Anchor, String> {
    let record = record_in(msg).ok_or(
        "not an audit record, nor a syslog message holding one (keep only botward's records in anchor files)",
    )?;
    let Some((canonical, hash, _mac)) = chain::split_line(record) else {
        return Err("the record has no hash and mac, or they are malformed".into());
    };
    if crate::text::hex(&chain::hash(&canonical)) != hash {
        return Err("the record does not match its hash (changed on its way off the host?)".into());
    }
    let f: Fields<'_> =
        serde_json::from_slice(record).map_err(|e| format!("not a valid record: {e}"))?;
    // A checkpoint names its chain's first public key; one signed by a
    // fixed key (naming no next key) is signed by it.
    let chain = match (f.kind.as_deref(), &f.detail) {
        (Some("checkpoint"), Some(d)) => {
            let key = |k: &str| d.get(k).and_then(|v| v.as_str());
            key("first_public_key")
                .or(key("public_key").filter(|_| key("next_public_key").is_none()))
        }
        _ => None,
    };
    Ok(Anchor {
        seq: f.seq,
        hash: hash.to_owned(),
        host: Some(f.host.map(|h| h.into_owned()).unwrap_or_default()),
        chain: chain.map(|c| c.to_ascii_lowercase()),
        source: source.to_owned(),
    })
}

/// The record line in a message, if it holds one.
fn record_in(msg: &[u8]) -> Option<&[u8]> {
    let msg = msg.trim_ascii();
    if msg.starts_with(b"{") {
        return Some(msg);
    }
    if let Some(m) = rfc5424_msg(msg) {
        let m = m.strip_prefix("\u{feff}".as_bytes()).unwrap_or(m);
        return Some(m.trim_ascii());
    }
    // Other syslog formats put the message last; a record starts so.
    let at = msg.windows(5).position(|w| w == br#"{"v":"#)?;
    Some(&msg[at..])
}

/// MSG of an RFC 5424 message: `<PRI>1 TS HOST APP PROCID MSGID SD MSG`.
fn rfc5424_msg(msg: &[u8]) -> Option<&[u8]> {
    let rest = msg.strip_prefix(b"<")?;
    let pri = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if pri == 0 || pri > 3 {
        return None;
    }
    let mut rest = rest[pri..].strip_prefix(b">1 ")?;
    // TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
    for _ in 0..5 {
        let sp = rest.iter().position(|c| *c == b' ')?;
        rest = &rest[sp + 1..];
    }
    let sd_end = if rest.starts_with(b"-") {
        1
    } else {
        structured_data_len(rest)?
    };
    let after = &rest[sd_end..];
    match after.first() {
        None => Some(after),
        Some(b' ') => Some(&after[1..]),
        Some(_) => None,
    }
}

/// The length of one or more `[id param="value" ...]` elements.
fn structured_data_len(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        let mut quoted = false;
        i += 1;
        loop {
            match *s.get(i)? {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    (i > 0).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{seal_line, EpochKey};

    fn record(seq: u64) -> String {
        let mut line = format!(
            r#"{{"v":1,"seq":{seq},"host":"h1","kind":"checkpoint","detail":{{"x":"a] \"b"}},"prev":null,"epoch":0}}"#
        )
        .into_bytes();
        seal_line(&mut line, &EpochKey::genesis(&[3; 32]));
        line.pop();
        String::from_utf8(line).unwrap()
    }

    fn read(text: &str) -> Result<Vec<(String, u64)>, Malformed> {
        let mut out = Vec::new();
        read_messages(text.as_bytes(), |at, msg| {
            let a = parse_message(msg, at).map_err(Malformed::Line)?;
            out.push((at.to_owned(), a.seq));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn every_form_a_record_leaves_the_host_in_is_read() {
        let (r1, r2) = (record(1), record(2));
        let syslog = |r: &str| {
            format!("<109>1 2026-12-01T19:24:06.458413Z host botward 812 checkpoint - {r}")
        };
        let framed = |r: &str| {
            let m = syslog(r);
            format!("{} {m}", m.len())
        };
        let text = [
            r1.clone(),
            String::new(),
            syslog(&r2),
            format!("{}{}", framed(&r1), framed(&r2)),
            format!("{}\n{}", framed(&r1), framed(&r2)),
            format!("Dec  1 19:24:06 host botward[812]: {r2}"),
            format!("<109>1 - host botward 812 checkpoint [a@1 x=\"] \\\" \"][b@2] \u{feff}{r1}"),
        ]
        .join("\n");
        let got = read(&text).unwrap();
        let seqs: Vec<u64> = got.iter().map(|(_, s)| *s).collect();
        assert_eq!(seqs, [1, 2, 1, 2, 1, 2, 2, 1]);
        assert_eq!(got[3].0, "4, frame 2");
    }

    #[test]
    fn anything_but_a_sealed_record_is_an_error() {
        for bad in [
            "hello".to_string(),
            "<13>1 2026-12-01T00:00:00Z host other 1 - - started".into(),
            record(5).replace("\"seq\":5", "\"seq\":6"),
            format!("99 {}", "<109>1 - h a 1 m - {}"),
            "{\"v\":1}".into(),
        ] {
            assert!(
                matches!(read(&bad), Err(Malformed::Line(_))),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn copies_count_once_and_different_records_of_one_seq_conflict() {
        let mut a = Anchors::default();
        let one = parse_message(record(1).as_bytes(), "f:1").unwrap();
        a.add(one.clone()).unwrap();
        a.add(Anchor {
            source: "f:2".into(),
            ..one.clone()
        })
        .unwrap();
        assert_eq!(a.len(), 1);
        a.add(Anchor {
            host: Some("h2".into()),
            hash: "0".repeat(64),
            ..one.clone()
        })
        .unwrap();
        assert_eq!(a.len(), 2);
        let clash = a.add(Anchor {
            hash: "1".repeat(64),
            source: "g:9".into(),
            ..one
        });
        assert!(matches!(clash, Err(Malformed::Line(e)) if e.contains("f:1 and g:9")));
    }
}
