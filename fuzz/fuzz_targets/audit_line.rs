//! Audit log lines through every reader: `audit verify`, `audit query` (all
//! four formats), `audit report` and `analyze`, as the CLI calls them, on
//! real files.
//!
//! Input: a flags byte, then the log; NUL bytes split it into up to three
//! files (rotated files, in any order). Flags:
//! - bit 0 seals the lines first, as the writer would: in each line that is
//!   a JSON object, `"prev":"@"` and `"covers_hash":"@"` become the previous
//!   line's hash, `"next_public_key":"@"` the public key of a new signing
//!   key for the next epoch, `"signature":"@"` a checkpoint signature over
//!   them (by a fixed key, or the key the last checkpoint of the previous
//!   epoch named), and the hash and MAC (epoch keys from a fixed seed) are
//!   appended, so that the verifier's deeper checks are reached;
//! - bit 1 analyses in Europe/Berlin instead of UTC; bits 2-3 pick the
//!   training window; bits 4-5 a query filter;
//! - bits 6-7 pick the readers: 0 verify, 1 query and report, 2 analyze,
//!   3 all of them.
//!
//! Invariants:
//! - verify: a chain intact with both keys is intact, with the same counts,
//!   with fewer keys; an intact chain has contiguous seqs; a tampered one
//!   names one of the files and a line in it;
//! - query: every format writes one entry per matching record (the table one
//!   line, with no control characters; CSV one RFC 4180 row of 20 fields;
//!   JSON Lines the record itself; OCSF one event of class 3002 or 6003);
//! - report and analyze HTML pages use only their own tags and in-page links;
//! - analyze counts at most one record per line and names only its
//!   detectors, with scores of at most 100;
//! - nothing panics.

#![no_main]

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::OnceLock;

use botward::anomaly::{self, Analyzer, Options};
use botward::audit::chain::{self, EpochKey};
use botward::audit::query::{self, Filter, Format};
use botward::audit::report::{self, ChainStatus};
use botward::audit::verify::{self, Keys, Outcome, Report};
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::Value;

const SEED: [u8; 32] = [7; 32];
/// Epoch keys the sealer derives; later epochs get a wrong MAC.
const MAX_SEALED_EPOCH: u64 = 64;

/// Tags the report and analyze pages are made of.
const TAGS: [&str; 35] = [
    "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "main", "header", "section",
    "h1", "h2", "h3", "p", "span", "div", "table", "thead", "tbody", "tr", "th", "td", "dl", "dt",
    "dd", "em", "code", "br", "wbr", "a", "ul", "li", "svg", "rect", "circle",
];
const SVG_TAGS: [&str; 2] = ["line", "text"];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, log)) = data.split_first() else {
        return;
    };
    let mut parts: Vec<Vec<u8>> = log.splitn(3, |b| *b == 0).map(<[u8]>::to_vec).collect();
    if flags & 1 != 0 {
        seal(&mut parts);
    }
    let files = write_files(&parts);
    let lines: Vec<usize> = parts.iter().map(|p| count_lines(p)).collect();
    let total_lines: usize = lines.iter().sum();

    // One reader per input keeps each run fast; 3 runs them all.
    let readers = flags >> 6;
    let chain = if readers == 0 || readers == 3 {
        check_verify(&files, &lines, total_lines)
    } else {
        ChainStatus {
            verdict: "not verified".into(),
            detail: "no key".into(),
            ok: false,
        }
    };
    if readers == 1 || readers == 3 {
        check_query_and_report(&files, flags, &chain);
    }
    if readers == 2 || readers == 3 {
        check_analyze(&files, flags, total_lines);
    }
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
});

fn check_verify(files: &[PathBuf], lines: &[usize], total_lines: usize) -> ChainStatus {
    let public = signing_key(0).public_key().as_ref().to_vec();
    let full = Keys {
        public_key: Some(public.clone()),
        seed: Some(zeroize::Zeroizing::new(SEED)),
        ..Keys::default()
    };
    let public_only = Keys {
        public_key: Some(public.clone()),
        ..Keys::default()
    };
    let run = |keys: &Keys| verify::verify(files, keys).expect("the files are readable");
    let reports = [run(&full), run(&public_only), run(&Keys::default())];
    for r in &reports {
        assert_eq!(r.files, files.len());
        assert!(r.records as usize <= total_lines);
        assert!(r.checkpoints <= r.records);
        match &r.outcome {
            Outcome::Tampered { file, line, .. } => {
                let i = files
                    .iter()
                    .position(|f| f == file)
                    .unwrap_or_else(|| panic!("tampered file {file:?} is not one of the inputs"));
                assert!(
                    *line >= 1 && *line <= lines[i].max(1),
                    "line {line} of {}",
                    lines[i]
                );
            }
            Outcome::Sealed | Outcome::Unsealed { .. } => intact(r),
        }
    }
    // Fewer keys check less: what verifies with more verifies with fewer,
    // and the same way.
    for (more, fewer) in [(0, 1), (1, 2), (0, 2)] {
        if !matches!(reports[more].outcome, Outcome::Tampered { .. }) {
            same(&reports[more], &reports[fewer]);
        }
    }
    let r = &reports[0];
    ChainStatus {
        verdict: format!("{:?}", r.outcome),
        detail: format!("{} records", r.records),
        ok: !matches!(r.outcome, Outcome::Tampered { .. }),
    }
}

fn intact(r: &Report) {
    match (r.first_seq, r.last_seq) {
        (Some(first), Some(last)) => {
            assert!(first <= last);
            assert_eq!(last - first + 1, r.records, "seqs are contiguous");
        }
        (None, None) => assert_eq!(r.records, 0),
        other => panic!("first and last seq {other:?}"),
    }
    if let Outcome::Unsealed {
        after_checkpoint,
        unsealed,
    } = r.outcome
    {
        assert!(unsealed <= r.records + 1);
        if let (Some(c), Some(last)) = (after_checkpoint, r.last_seq) {
            assert!(c <= last);
        }
    } else {
        assert!(r.checkpoints >= 1, "sealed without a checkpoint");
    }
}

fn same(a: &Report, b: &Report) {
    assert_eq!(a.outcome, b.outcome);
    assert_eq!(
        (a.records, a.first_seq, a.last_seq, a.checkpoints),
        (b.records, b.first_seq, b.last_seq, b.checkpoints)
    );
}

fn check_query_and_report(files: &[PathBuf], flags: u8, chain: &ChainStatus) {
    let records = botward::audit::read_records(files).expect("the files are readable");
    let filter = match (flags >> 4) & 3 {
        0 => Filter::default(),
        1 => Filter {
            bot: Some("invoice-bot".into()),
            ..Filter::default()
        },
        2 => Filter {
            decision: Some("deny".into()),
            since: Some("2026-01-01T00:00:00Z".parse().expect("time")),
            ..Filter::default()
        },
        _ => Filter {
            kind: Some("secret.read".into()),
            until: Some("2026-06-01T00:00:00Z".parse().expect("time")),
            ..Filter::default()
        },
    };
    let matching: Vec<&Value> = records.iter().filter(|r| filter.matches(r)).collect();
    let run = |format: Format| {
        let mut out = Vec::new();
        let n = query::write(records.clone(), &filter, format, &mut out).expect("writes to memory");
        assert_eq!(n, matching.len(), "{format}");
        String::from_utf8(out).expect("query output is UTF-8")
    };

    let table = run(Format::Table);
    assert_eq!(
        table.lines().count(),
        matching.len() + 1,
        "one table line per record"
    );
    assert!(
        !table.chars().any(|c| c.is_control() && c != '\n'),
        "control character in the table"
    );

    let csv = run(Format::Csv);
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), matching.len() + 1, "one CSV row per record");
    assert!(
        rows.iter().all(|&fields| fields == 20),
        "CSV rows of 20 fields (the last, claimed_bot)"
    );

    let jsonl = run(Format::Jsonl);
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines.len(), matching.len());
    // The same values; characters a terminal acts on are written as \u escapes.
    for (line, rec) in lines.iter().zip(&matching) {
        let back: serde_json::Value = serde_json::from_str(line).expect("jsonl is JSON");
        assert_eq!(&back, *rec);
    }

    let ocsf = run(Format::Ocsf);
    let events: Vec<&str> = ocsf.lines().collect();
    assert_eq!(events.len(), matching.len());
    for e in events {
        let v: Value = serde_json::from_str(e).expect("OCSF output is JSON");
        let class = v.get("class_uid").and_then(Value::as_u64);
        assert!(matches!(class, Some(3002 | 6003)), "class {class:?}");
    }

    let mut page = Vec::new();
    report::html(&records, chain, &mut page).expect("writes to memory");
    check_html(&String::from_utf8(page).expect("the report is UTF-8"));
}

fn check_analyze(files: &[PathBuf], flags: u8, total_lines: usize) {
    let tz = if flags & 2 != 0 {
        jiff::tz::TimeZone::get("Europe/Berlin").expect("tzdata")
    } else {
        jiff::tz::TimeZone::UTC
    };
    let train =
        jiff::SignedDuration::from_hours(24 * [0, 1, 28, 3650][usize::from(flags >> 2) & 3]);
    let mut analyzer = Analyzer::new(Options { train, tz });
    let mut line = Vec::new();
    for f in verify::order_files(files).expect("the files are readable") {
        let mut reader = std::io::BufReader::new(std::fs::File::open(f).expect("readable"));
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).expect("readable") == 0 {
                break;
            }
            analyzer.line(&line);
        }
    }
    let a = analyzer.finish();
    assert!(a.records as usize <= total_lines);
    assert!(a.scored_bot_days.is_finite() && a.scored_bot_days >= 0.0);
    let known: BTreeSet<&str> = anomaly::Detector::ALL.map(|d| d.as_str()).into();
    for f in &a.findings {
        assert!(
            known.contains(f.detector.as_str()),
            "detector {}",
            f.detector
        );
        assert!(f.score <= 100);
        for t in [&f.start, &f.end] {
            assert!(t.len() == 20 && t.parse::<jiff::Timestamp>().is_ok(), "{t}");
        }
        assert!(f.evidence.iter().all(|e| !e.is_empty()));
    }
    let _ = anomaly::text(&a);
    serde_json::to_string(&a.findings).expect("findings serialize");
    let mut page = Vec::new();
    anomaly::html::html(&a, &mut page).expect("writes to memory");
    check_html(&String::from_utf8(page).expect("the page is UTF-8"));
}

/// Every tag is one the page generator writes, and every link stays on the
/// page: text from the log is escaped.
fn check_html(page: &str) {
    let b = page.as_bytes();
    for (i, _) in page.match_indices('<') {
        let rest = &page[i + 1..];
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
            .collect();
        assert!(
            TAGS.contains(&name.as_str()) || SVG_TAGS.contains(&name.as_str()),
            "tag {name:?} at {i}: {:?}",
            String::from_utf8_lossy(&b[i..b.len().min(i + 80)])
        );
    }
    for (i, _) in page.match_indices("href=") {
        assert!(page[i..].starts_with("href=\"#"), "link at {i}");
    }
    assert!(!has_event_attribute(page), "event attribute in a tag");
}

/// An ` onload=`-style attribute inside a tag.
fn has_event_attribute(page: &str) -> bool {
    let mut in_tag = false;
    let b = page.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'<' => in_tag = true,
            b'>' => in_tag = false,
            b' ' if in_tag => {
                let word: Vec<u8> = b[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .copied()
                    .collect();
                if word.len() > 2
                    && word.starts_with(b"on")
                    && b.get(i + 1 + word.len()) == Some(&b'=')
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Field counts of the rows of RFC 4180 text with CRLF line ends.
fn csv_rows(text: &str) -> Vec<usize> {
    let mut rows = Vec::new();
    let mut fields = 1;
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields += 1,
            '\r' if !quoted && chars.peek() == Some(&'\n') => {
                chars.next();
                rows.push(fields);
                fields = 1;
            }
            _ => {}
        }
    }
    assert!(!quoted && fields == 1, "CSV ends inside a row");
    rows
}

/// Lines, with a torn last line counted.
fn count_lines(part: &[u8]) -> usize {
    part.split(|b| *b == b'\n').count()
        - usize::from(part.last() == Some(&b'\n') || part.is_empty())
}

/// Seals each line that is a JSON object, as the writer would.
fn seal(parts: &mut [Vec<u8>]) {
    let mut prev: Option<String> = None;
    let mut keys = vec![EpochKey::genesis(&SEED)];
    let mut signing = Signing::default();
    for part in parts.iter_mut() {
        let mut out = Vec::with_capacity(part.len() + 256);
        let ends_with_newline = part.last() == Some(&b'\n');
        let mut lines: Vec<&[u8]> = part.split(|b| *b == b'\n').collect();
        if ends_with_newline {
            lines.pop();
        }
        let n = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            let torn = i + 1 == n && !ends_with_newline;
            let sealed = match std::str::from_utf8(line) {
                Ok(l) if !torn && l.starts_with('{') && l.ends_with('}') => {
                    seal_line(l, &mut prev, &mut keys, &mut signing)
                }
                _ => None,
            };
            match sealed {
                Some(s) => out.extend_from_slice(&s),
                None => {
                    out.extend_from_slice(line);
                    if !torn {
                        out.push(b'\n');
                    }
                }
            }
        }
        *part = out;
    }
}

/// The signing keys as the verifier walks them: a fixed key (0) until a
/// checkpoint names the next epoch's key, which signs from that epoch on.
#[derive(Default)]
struct Signing {
    /// The key signing now, the epoch of the last checkpoint, the key it
    /// named, and how many keys were made.
    key: u64,
    epoch: Option<u64>,
    next: Option<u64>,
    made: u64,
}

/// Signing key `n`, from a fixed seed; key 0's public key is the one the
/// verifier is given.
fn signing_key(n: u64) -> Ed25519KeyPair {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    Ed25519KeyPair::from_seed_unchecked(&seed).expect("Ed25519 seed")
}

fn seal_line(
    line: &str,
    prev: &mut Option<String>,
    keys: &mut Vec<EpochKey>,
    signing: &mut Signing,
) -> Option<Vec<u8>> {
    let prev_json = prev
        .as_ref()
        .map_or("null".to_string(), |h| format!("\"{h}\""));
    let mut body = line
        .replacen("\"prev\":\"@\"", &format!("\"prev\":{prev_json}"), 1)
        .replacen(
            "\"covers_hash\":\"@\"",
            &format!("\"covers_hash\":{prev_json}"),
            1,
        );
    let v: Value = serde_json::from_str(&body).ok()?;
    let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let epoch = v.get("epoch").and_then(Value::as_u64).unwrap_or(0);
    if body.contains("\"signature\":\"@\"") {
        if let (Some(e), Some(next)) = (signing.epoch, signing.next) {
            if epoch == e + 1 {
                signing.key = next;
                signing.next = None;
            }
        }
        signing.epoch = Some(epoch);
        let covers = prev.as_deref().unwrap_or("");
        let msg = if body.contains("\"next_public_key\":\"@\"") {
            signing.made += 1;
            let next = signing.made;
            signing.next = Some(next);
            let next_hex = botward::identity::hex(signing_key(next).public_key().as_ref());
            body = body.replacen(
                "\"next_public_key\":\"@\"",
                &format!("\"next_public_key\":\"{next_hex}\""),
                1,
            );
            // chain::checkpoint_message_next, where signing keys ratchet.
            format!(
                "botward-audit-checkpoint-next\n{}\n{covers}\n{epoch}\n{next_hex}",
                seq.saturating_sub(1)
            )
            .into_bytes()
        } else {
            chain::checkpoint_message(seq.saturating_sub(1), covers, epoch)
        };
        let sig = signing_key(signing.key).sign(&msg);
        body = body.replacen(
            "\"signature\":\"@\"",
            &format!("\"signature\":\"{}\"", botward::identity::hex(sig.as_ref())),
            1,
        );
    }
    while (keys.len() as u64) <= epoch.min(MAX_SEALED_EPOCH) {
        let mut next = EpochKey::from_raw(keys.len() as u64 - 1, keys[keys.len() - 1].raw());
        next.ratchet();
        keys.push(next);
    }
    let key = &keys[epoch.min(MAX_SEALED_EPOCH) as usize];
    let mut bytes = body.into_bytes();
    let h = chain::seal_line(&mut bytes, key);
    *prev = Some(botward::identity::hex(&h));
    Some(bytes)
}

/// Writes the parts to files in this process's own directory, as
/// `audit.jsonl`, `audit.jsonl.1`, ...; each run removes them again.
fn write_files(parts: &[Vec<u8>]) -> Vec<PathBuf> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("botward-fuzz-audit-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("work dir");
        d
    });
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f = dir.join(if i == 0 {
                "audit.jsonl".to_string()
            } else {
                format!("audit.jsonl.{i}")
            });
            std::fs::write(&f, p).expect("write");
            f
        })
        .collect()
}
