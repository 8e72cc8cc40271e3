//! The tamper-evident audit chain: every kind of tampering is caught across
//! rotation and restart, keys are forward-secure, torn lines are recovered,
//! and `botward audit verify` exits 0, 1 or 2 as documented.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use botward::audit::chain::{self, EpochKey};
use botward::audit::verify::{self, Damage, Keys, Outcome};
use botward::audit::{log_files, AuditLog, Decision, Record};
use botward::config::{Audit, Fsync};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("botward-chain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cfg(dir: &Path, rotate_bytes: u64) -> Audit {
    Audit {
        path: dir.join("audit.jsonl"),
        state_dir: dir.join("state"),
        fsync: Fsync::Batch,
        rotate_bytes,
        rotate_daily: false,
        checkpoint_every: 40,
        checkpoint_interval: Duration::from_secs(3600),
        ratchet_interval: Duration::from_secs(3600),
        syslog: None,
    }
}

fn write_records(log: &AuditLog, n: usize, tag: &str) {
    for i in 0..n {
        let mut r = Record::new("secret.read", format!("{tag}-{i}"), Arc::from("test-host"));
        r.decision = if i % 7 == 0 {
            Decision::Deny
        } else {
            Decision::Allow
        };
        r.status = if i % 7 == 0 { 403 } else { 200 };
        r.bot = Some(format!("bot-{}", i % 3));
        r.secret = Some("erp-db".into());
        log.write_blocking(r).unwrap();
    }
}

/// Two runs of 150 records each, with size rotation: several files, two
/// epochs, checkpoints, and a final seal.
fn pristine(name: &str) -> (PathBuf, Audit) {
    let dir = tmp(name);
    let c = cfg(&dir, 16 * 1024);
    for run in 0..2 {
        let log = AuditLog::open(&c).unwrap();
        write_records(&log, 150, &format!("run{run}"));
        log.close();
    }
    (dir, c)
}

fn keys(c: &Audit, public: bool, seed: bool) -> Keys {
    let kf = botward::audit::writer_key_files(c);
    let read = |p: &Path| chain::unhex(&std::fs::read_to_string(p).unwrap()).unwrap();
    Keys {
        public_key: public.then(|| read(&kf.public)),
        seed: seed.then(|| zeroize::Zeroizing::new(read(&kf.seed).try_into().unwrap())),
        ..Default::default()
    }
}

fn check(c: &Audit, public: bool, seed: bool) -> Outcome {
    verify::verify(&log_files(&c.path), &keys(c, public, seed))
        .unwrap()
        .outcome
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(p: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(p, s).unwrap();
}

/// The file in the middle of the chain, and a record line in its middle.
fn middle(c: &Audit) -> (PathBuf, usize) {
    let files = log_files(&c.path);
    assert!(files.len() >= 4, "rotation produced {} files", files.len());
    let f = files[files.len() / 2].clone();
    let n = lines(&f).len();
    (f, n / 2)
}

fn damage(o: &Outcome) -> Option<Damage> {
    match o {
        Outcome::Tampered { damage, .. } => Some(*damage),
        _ => None,
    }
}

#[test]
fn a_pristine_chain_across_rotation_and_restart_verifies_sealed() {
    let (_dir, c) = pristine("pristine");
    let report = verify::verify(&log_files(&c.path), &keys(&c, true, true)).unwrap();
    assert_eq!(report.outcome, Outcome::Sealed);
    // 300 records, checkpoints every 40, at each rotation and at each close.
    assert!(report.records > 300);
    assert!(report.checkpoints >= 9, "{report:?}");
    assert_eq!(report.first_seq, Some(0));
    assert_eq!(check(&c, true, false), Outcome::Sealed);
    assert_eq!(check(&c, false, true), Outcome::Sealed);
    // Two runs: two epochs.
    let last: serde_json::Value = serde_json::from_str(lines(&c.path).last().unwrap()).unwrap();
    assert_eq!(last["epoch"], 1);
    assert_eq!(last["kind"], "checkpoint");
    assert_eq!(last["detail"]["final"], true);
    // Every record, checkpoints included, matches the published schema.
    let python = std::env::var_os("BOTWARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        });
    let out = std::process::Command::new(python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openapi_check.py"))
        .arg("--audit")
        .args(log_files(&c.path))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn editing_one_field_is_caught() {
    let (_dir, c) = pristine("edit");
    let (f, i) = middle(&c);
    let mut l = lines(&f);
    assert!(l[i].contains("\"bot-"));
    l[i] = l[i].replacen("\"bot-", "\"bot-X", 1);
    write_lines(&f, &l);
    for (public, seed) in [(true, false), (false, true), (true, true)] {
        match check(&c, public, seed) {
            Outcome::Tampered {
                file,
                line,
                damage: Damage::Edited,
                ..
            } => {
                assert_eq!((file, line), (f.clone(), i + 1));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn deleting_a_record_and_cutting_from_the_middle_are_caught() {
    let (_dir, c) = pristine("delete");
    let (f, i) = middle(&c);
    let orig = lines(&f);
    let mut l = orig.clone();
    l.remove(i);
    write_lines(&f, &l);
    assert_eq!(damage(&check(&c, true, false)), Some(Damage::Deleted));

    let mut l = orig.clone();
    l.drain(2..i);
    write_lines(&f, &l);
    match check(&c, true, true) {
        Outcome::Tampered {
            damage: Damage::Deleted,
            detail,
            ..
        } => assert!(detail.contains("to"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reordering_records_is_caught() {
    let (_dir, c) = pristine("reorder");
    let (f, i) = middle(&c);
    let mut l = lines(&f);
    l.swap(i, i + 1);
    write_lines(&f, &l);
    assert_eq!(damage(&check(&c, true, false)), Some(Damage::Reordered));
}

#[test]
fn truncating_the_tail_leaves_it_unsealed() {
    let (_dir, c) = pristine("truncate");
    // The final seal cut off.
    let mut l = lines(&c.path);
    l.pop();
    write_lines(&c.path, &l);
    assert!(matches!(check(&c, true, true), Outcome::Unsealed { unsealed, .. } if unsealed > 0));
    // The whole current file gone, and the end of the one before it.
    std::fs::remove_file(&c.path).unwrap();
    let files = log_files(&c.path);
    let last = files.last().unwrap();
    let mut l = lines(last);
    l.truncate(l.len() - 4);
    write_lines(last, &l);
    assert!(matches!(check(&c, true, true), Outcome::Unsealed { unsealed, .. } if unsealed > 0));
}

/// Rewrites lines from `from` on: applies `edit` to the canonical JSON,
/// then recomputes prev and hash, and MACs with `key` (an attacker's guess).
fn rechain(
    lines: &mut [String],
    from: usize,
    mut prev: Option<String>,
    key: &EpochKey,
    edit: impl Fn(&mut serde_json::Value),
) -> Option<String> {
    for line in lines.iter_mut().skip(from) {
        let (canonical, _, _) = chain::split_line(line.as_bytes()).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&canonical).unwrap();
        edit(&mut v);
        v["prev"] = prev.clone().into();
        // Keep the field order: re-serialize through an ordered map.
        let mut body = serde_json::to_vec(&v).unwrap();
        let h = chain::seal_line(&mut body, key);
        body.pop();
        *line = String::from_utf8(body).unwrap();
        prev = Some(botward::identity::hex(&h));
    }
    prev
}

#[test]
fn replacing_a_whole_file_is_caught() {
    let (_dir, c) = pristine("replace");
    let (f, _) = middle(&c);
    let mut l = lines(&f);
    let first: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
    let prev = first["prev"].as_str().map(str::to_owned);
    let forged_key = EpochKey::genesis(&[0x42; 32]);
    rechain(&mut l, 0, prev, &forged_key, |v| {
        if v["bot"] == "bot-1" {
            v["decision"] = "allow".into();
        }
    });
    write_lines(&f, &l);
    // Without any key material the forger cannot make checkpoints or MACs
    // match; and the next file no longer links to this one.
    assert!(matches!(
        damage(&check(&c, true, false)),
        Some(Damage::BadSignature | Damage::Edited)
    ));
    assert_eq!(damage(&check(&c, false, true)), Some(Damage::Edited));
}

#[test]
fn rechaining_with_plain_sha256_but_no_key_is_caught() {
    let (_dir, c) = pristine("rechain");
    let files = log_files(&c.path);
    let (f, i) = middle(&c);
    let idx = files.iter().position(|x| *x == f).unwrap();
    let forged_key = EpochKey::genesis(&[0x13; 32]);
    // Edit one record and re-hash everything after it, through every file.
    let mut l = lines(&f);
    let prev: serde_json::Value = serde_json::from_str(&l[i - 1]).unwrap();
    let mut last = rechain(
        &mut l,
        i,
        prev["hash"].as_str().map(str::to_owned),
        &forged_key,
        |v| {
            if v["id"].as_str().is_some_and(|s| s.ends_with("-7")) || v["decision"] == "deny" {
                v["decision"] = "allow".into();
                v["status"] = 200.into();
            }
        },
    );
    write_lines(&f, &l);
    for later in &files[idx + 1..] {
        let mut l = lines(later);
        last = rechain(&mut l, 0, last, &forged_key, |_| {});
        write_lines(later, &l);
    }
    // Hashes are consistent again, but signatures and MACs are not.
    assert_eq!(damage(&check(&c, true, false)), Some(Damage::BadSignature));
    match check(&c, false, true) {
        Outcome::Tampered {
            damage: Damage::Edited,
            detail,
            file,
            ..
        } => {
            assert!(detail.contains("MAC"), "{detail}");
            assert_eq!(file, f);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_key_taken_later_cannot_remac_earlier_epochs() {
    let dir = tmp("forward");
    let c = cfg(&dir, 0);
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 20, "before");
    log.close();
    // Restart: a new epoch. The intruder takes the key state now.
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 5, "after");
    let stolen: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(botward::audit::writer_key_files(&c).state).unwrap(),
    )
    .unwrap();
    log.close();
    let epoch = stolen["epoch"].as_u64().unwrap();
    assert!(epoch >= 1);
    let stolen_key = EpochKey::from_raw(
        epoch,
        &chain::unhex32(stolen["key"].as_str().unwrap()).unwrap(),
    );
    // The intruder rewrites record 3 (epoch 0) and re-MACs the chain with
    // the stolen key, pretending it is epoch 0's.
    let mut l = lines(&c.path);
    let prev: serde_json::Value = serde_json::from_str(&l[2]).unwrap();
    rechain(
        &mut l,
        3,
        prev["hash"].as_str().map(str::to_owned),
        &stolen_key,
        |v| {
            if v["seq"] == 3 {
                v["bot"] = "someone-else".into();
            }
        },
    );
    write_lines(&c.path, &l);
    match check(&c, false, true) {
        Outcome::Tampered {
            seq: Some(3),
            damage: Damage::Edited,
            detail,
            ..
        } => assert!(detail.contains("MAC")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_torn_last_line_is_recovered_and_the_chain_continues() {
    let dir = tmp("torn");
    let c = cfg(&dir, 0);
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 10, "a");
    // A crash mid-write: no close, half a line at the end.
    drop(log);
    let mut bytes = std::fs::read(&c.path).unwrap();
    bytes.extend_from_slice(br#"{"v":1,"seq":99,"ts":"2026-"#);
    std::fs::write(&c.path, &bytes).unwrap();
    assert!(matches!(check(&c, true, true), Outcome::Unsealed { .. }));

    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 3, "b");
    log.close();
    assert_eq!(check(&c, true, true), Outcome::Sealed);
    let recovered: Vec<serde_json::Value> = lines(&c.path)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "audit.recovered")
        .collect();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["detail"]["torn_bytes"], 27);
}

#[test]
fn a_log_without_its_key_state_refuses_to_continue() {
    let dir = tmp("nokey");
    let c = cfg(&dir, 0);
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 3, "a");
    log.close();
    std::fs::remove_file(botward::audit::writer_key_files(&c).state).unwrap();
    let err = AuditLog::open(&c).err().expect("must refuse");
    assert!(err.to_string().contains("cannot continue"), "{err}");
}

#[test]
fn the_cli_exit_codes_are_0_1_and_2() {
    let (dir, c) = pristine("cli");
    let kf = botward::audit::writer_key_files(&c);
    let run = |files: &[PathBuf]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_botward"))
            .args(["audit", "verify", "--public-key"])
            .arg(&kf.public)
            .arg("--seed")
            .arg(&kf.seed)
            .args(files)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let files = log_files(&c.path);
    let (code, out) = run(&files);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("intact and sealed"), "{out}");

    let (f, i) = middle(&c);
    let pristine_lines = lines(&f);
    let mut l = pristine_lines.clone();
    l.remove(i);
    write_lines(&f, &l);
    let (code, out) = run(&files);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TAMPERED") && out.contains("deleted") && out.contains(&format!(":{}", i + 1)),
        "{out}"
    );
    write_lines(&f, &pristine_lines);

    let mut l = lines(&c.path);
    l.pop();
    write_lines(&c.path, &l);
    let (code, out) = run(&files);
    assert_eq!(code, 2, "{out}");
    let _ = dir;
}

fn state_anchor(c: &Audit) -> Option<(u64, String)> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(botward::audit::writer_key_files(c).state).ok()?,
    )
    .ok()?;
    Some((v["seq"].as_u64()?, v["hash"].as_str()?.to_owned()))
}

#[test]
fn cutting_the_head_or_cutting_back_to_an_earlier_seal_is_caught() {
    let (_dir, c) = pristine("cut");
    // The oldest file removed: records 0.. are missing.
    let files = log_files(&c.path);
    let first = files[0].clone();
    let saved = std::fs::read(&first).unwrap();
    std::fs::remove_file(&first).unwrap();
    assert_eq!(damage(&check(&c, true, true)), Some(Damage::Deleted));
    // Unless the operator says older files were retired.
    let second_first_seq: serde_json::Value =
        serde_json::from_str(&lines(&log_files(&c.path)[0])[0]).unwrap();
    let mut k = keys(&c, true, true);
    k.from_seq = second_first_seq["seq"].as_u64();
    assert_eq!(
        verify::verify(&log_files(&c.path), &k).unwrap().outcome,
        Outcome::Sealed
    );
    std::fs::write(&first, saved).unwrap();

    // The tail cut back to the first run's final seal: the chain alone
    // looks sealed, but the key state knows how far botward wrote.
    let all: Vec<PathBuf> = log_files(&c.path);
    let mut kept = Vec::new();
    'files: for f in &all {
        let mut out = Vec::new();
        for l in lines(f) {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            out.push(l.clone());
            if v["kind"] == "checkpoint" && v["detail"]["final"] == true {
                write_lines(f, &out);
                kept.push(f.clone());
                break 'files;
            }
        }
        kept.push(f.clone());
    }
    for f in all.iter().filter(|f| !kept.contains(f)) {
        std::fs::remove_file(f).unwrap();
    }
    assert_eq!(
        check(&c, true, true),
        Outcome::Sealed,
        "the cut log alone looks sealed"
    );
    let mut k = keys(&c, true, true);
    k.anchor = state_anchor(&c);
    assert_eq!(
        damage(&verify::verify(&log_files(&c.path), &k).unwrap().outcome),
        Some(Damage::Deleted)
    );
    // And botward refuses to continue such a chain.
    let err = AuditLog::open(&c).err().expect("must refuse");
    assert!(err.to_string().contains("were cut"), "{err}");
}

#[test]
fn a_removed_log_with_its_key_state_left_refuses_to_start() {
    let dir = tmp("gone");
    let c = cfg(&dir, 0);
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 3, "a");
    log.close();
    std::fs::remove_file(&c.path).unwrap();
    let err = AuditLog::open(&c).err().expect("must refuse");
    assert!(err.to_string().contains("is gone"), "{err}");
}

// === Truncation and re-signing, caught without on-host state ===

/// The botward binary under test: this build's, or `BOTWARD_BIN` (an older
/// build, to show a test fails there).
fn botward_bin() -> PathBuf {
    std::env::var_os("BOTWARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_botward")))
}

/// Runs `botward audit verify ARGS`: the exit code, and stdout then stderr.
fn verify_cli<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> (i32, String) {
    let out = std::process::Command::new(botward_bin())
        .args(["audit", "verify"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters in the output: {text:?}"
    );
    (out.status.code().unwrap(), text)
}

/// `--public-key P --seed S` of a log, as arguments.
fn key_args(c: &Audit) -> Vec<PathBuf> {
    let kf = botward::audit::writer_key_files(c);
    vec!["--public-key".into(), kf.public, "--seed".into(), kf.seed]
}

fn checkpoint_lines(p: &Path) -> Vec<String> {
    lines(p)
        .into_iter()
        .filter(|l| l.contains(r#""kind":"checkpoint""#))
        .collect()
}

/// A collector on loopback that keeps the raw bytes of one connection, as
/// the syslog sink sent them (RFC 6587 octet counting).
fn capture_syslog() -> (String, std::thread::JoinHandle<Vec<u8>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let capture = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).unwrap();
        raw
    });
    (address, capture)
}

#[test]
fn a_log_cut_back_to_an_earlier_checkpoint_is_caught_by_anchors_kept_off_the_host() {
    let dir = tmp("anchor-cut");
    let (address, capture) = capture_syslog();
    let c = Audit {
        syslog: Some(botward::config::Syslog {
            address,
            all_records: false,
        }),
        ..cfg(&dir, 0)
    };
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 130, "live");
    // The live log, as an auditor copies it off the running host.
    let live = dir.join("live.jsonl");
    std::fs::copy(&c.path, &live).unwrap();
    log.close();
    let raw = capture.join().unwrap();
    let checkpoints = checkpoint_lines(&live);
    assert_eq!(checkpoints.len(), 3, "checkpoints at seq 40, 81 and 122");

    // Anchors in the forms they leave the host in: the checkpoint lines
    // themselves, the syslog stream as sent, one syslog message per line as
    // a collector stores it, and a traditional syslog file line.
    let plain = dir.join("anchors.jsonl");
    write_lines(&plain, &checkpoints);
    let stream = dir.join("syslog.raw");
    std::fs::write(&stream, &raw).unwrap();
    let mut messages = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
        messages.push(String::from_utf8(rest[sp + 1..sp + 1 + len].to_vec()).unwrap());
        rest = &rest[sp + 1 + len..];
    }
    assert_eq!(messages.len(), 4, "three checkpoints and the final seal");
    assert!(messages[0].starts_with("<109>1 "), "{}", messages[0]);
    let per_line = dir.join("collector.log");
    write_lines(&per_line, &messages);
    let traditional = dir.join("messages");
    write_lines(
        &traditional,
        &[format!(
            "Dec  1 19:24:06 bot-host-01 botward[812]: {}",
            checkpoints[2]
        )],
    );

    // Cut back to the checkpoint at seq 81: `head -n 82`.
    let cut = dir.join("cut.jsonl");
    write_lines(&cut, &lines(&live)[..82]);
    let args = |log: &Path, anchors: &[&Path]| {
        let mut a: Vec<PathBuf> = key_args(&c);
        for f in anchors {
            a.push("--anchor".into());
            a.push(f.to_path_buf());
        }
        a.push(log.to_path_buf());
        a
    };

    // Without anchors, the cut log looks exactly like the live one, and the
    // output says what could not be checked.
    for log in [&live, &cut] {
        let (code, out) = verify_cli(args(log, &[]));
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("truncation: not checked"), "{out}");
        assert!(
            out.contains("hashes and MACs: checked with the seed"),
            "{out}"
        );
        assert!(
            out.contains("signatures: checked up to the checkpoint"),
            "{out}"
        );
    }
    // With anchors, the cut is tampering, named with the anchor.
    for anchors in [
        vec![plain.as_path()],
        vec![stream.as_path()],
        vec![per_line.as_path()],
        vec![traditional.as_path()],
    ] {
        let (code, out) = verify_cli(args(&cut, &anchors));
        assert_eq!(code, 1, "{anchors:?}: {out}");
        assert!(
            out.starts_with("TAMPERED") && out.contains("deleted") && out.contains("cut back"),
            "{out}"
        );
        assert!(out.contains(&*anchors[0].to_string_lossy()), "{out}");
        assert!(out.contains("seq 81"), "{out}");
    }
    // The live log holds every anchor taken while it ran.
    let (code, out) = verify_cli(args(&live, &[&plain]));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("truncation: checked against 3 anchor(s)")
            && out.contains("latest at seq 122"),
        "{out}"
    );
    // Another chain's checkpoints and other hosts' records in the same
    // collector file are set aside, by first public key and by host.
    let other_chain =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit-909baa2/audit.jsonl");
    let (code, out) = verify_cli(args(&live, &[&plain, &other_chain]));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("checked against 3 anchor(s)")
            && out.contains("6 checkpoint(s) of other chains set aside")
            && out.contains("40 anchor(s) of other hosts set aside"),
        "{out}"
    );
    assert_eq!(verify_cli(args(&cut, &[&other_chain, &plain])).0, 1);
    let (code, out) = verify_cli(args(&cut, &[&other_chain]));
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("none of the 46 anchors can be checked"),
        "{out}"
    );

    // The sealed log, against everything the sink shipped, copies counted once.
    let (code, out) = verify_cli(args(&c.path, &[&stream, &per_line, &plain]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("checked against 4 anchor(s) kept off the host, from 3 file(s)"),
        "{out}"
    );

    // An anchor file that holds anything but records is refused, not skipped.
    let junk = dir.join("junk.log");
    write_lines(
        &junk,
        &[
            checkpoints[0].clone(),
            "Dec  1 19:24:06 h sshd[1]: Accepted".into(),
        ],
    );
    let (code, out) = verify_cli(args(&cut, &[&junk]));
    assert_eq!(code, 64, "{out}");
    assert!(out.contains(&format!("{}:2", junk.display())), "{out}");
    // So is an anchor changed on its way.
    let edited = dir.join("edited.jsonl");
    write_lines(
        &edited,
        &[checkpoints[2].replacen("\"reason\":\"count\"", "\"reason\":\"other\"", 1)],
    );
    let (code, out) = verify_cli(args(&cut, &[&edited]));
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("does not match its hash"), "{out}");
}

/// What an intruder finds on the host: the current MAC key and the current
/// signing key, whatever files hold them.
fn steal_keys(c: &Audit) -> (EpochKey, ring::signature::Ed25519KeyPair) {
    let kf = botward::audit::writer_key_files(c);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kf.state).unwrap()).unwrap();
    let mac = EpochKey::from_raw(
        state["epoch"].as_u64().unwrap(),
        &chain::unhex32(state["key"].as_str().unwrap()).unwrap(),
    );
    let signer = match state["sign"].as_str() {
        Some(seed) => {
            ring::signature::Ed25519KeyPair::from_seed_unchecked(&chain::unhex(seed).unwrap())
                .unwrap()
        }
        None => {
            ring::signature::Ed25519KeyPair::from_pkcs8(&std::fs::read(&kf.sign).unwrap()).unwrap()
        }
    };
    (mac, signer)
}

/// The signing material on the host, as hex: to see it change.
fn signing_material(c: &Audit) -> String {
    let kf = botward::audit::writer_key_files(c);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kf.state).unwrap()).unwrap();
    match state["sign"].as_str() {
        Some(s) => s.to_owned(),
        None => botward::identity::hex(&std::fs::read(&kf.sign).unwrap()),
    }
}

/// Rewrites the record with request id `id` in the log at `path` with
/// `edit`, and re-chains everything after it as an intruder with stolen keys
/// would: prev and hash recomputed, MACs with `mac`, and every checkpoint
/// made to cover the record before it and signed with `signer` over the
/// message the verifier checks.
fn forge(
    path: &Path,
    id: &str,
    mac: &EpochKey,
    signer: &ring::signature::Ed25519KeyPair,
    edit: impl Fn(&mut serde_json::Value),
) {
    use ring::signature::KeyPair;
    let public = botward::identity::hex(signer.public_key().as_ref());
    let mut lines = lines(path);
    let needle = format!(r#""id":"{id}""#);
    let from = lines.iter().position(|x| x.contains(&needle)).unwrap();
    let before: serde_json::Value = serde_json::from_str(&lines[from - 1]).unwrap();
    let mut prev = before["hash"].as_str().map(str::to_owned);
    for line in lines.iter_mut().skip(from) {
        let (canonical, _, _) = chain::split_line(line.as_bytes()).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&canonical).unwrap();
        edit(&mut v);
        if v["kind"] == "checkpoint" {
            let seq = v["seq"].as_u64().unwrap();
            let epoch = v["epoch"].as_u64().unwrap();
            let covers = prev.clone().unwrap();
            let d = &mut v["detail"];
            d["covers_seq"] = (seq - 1).into();
            d["covers_hash"] = covers.clone().into();
            d["public_key"] = public.clone().into();
            let msg = match d["next_public_key"].as_str() {
                Some(next) => {
                    format!(
                        "botward-audit-checkpoint-next\n{}\n{covers}\n{epoch}\n{next}",
                        seq - 1
                    )
                }
                None => format!("botward-audit-checkpoint\n{}\n{covers}\n{epoch}", seq - 1),
            };
            d["signature"] = botward::identity::hex(signer.sign(msg.as_bytes()).as_ref()).into();
        }
        v["prev"] = prev.clone().into();
        let mut body = serde_json::to_vec(&v).unwrap();
        let h = chain::seal_line(&mut body, mac);
        body.pop();
        *line = String::from_utf8(body).unwrap();
        prev = Some(botward::identity::hex(&h));
    }
    write_lines(path, &lines);
}

fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_log_re_signed_with_the_stolen_current_key_is_caught_with_the_first_public_key_alone() {
    let dir = tmp("stolen-sign");
    let c = cfg(&dir, 0);
    let kf = botward::audit::writer_key_files(&c);
    let mut material = Vec::new();
    for run in 0..2 {
        let log = AuditLog::open(&c).unwrap();
        write_records(&log, 50, &format!("run{run}"));
        log.close();
        material.push(signing_material(&c));
    }
    // The signing key moved on, and the old one is gone from the host.
    assert_ne!(material[0], material[1], "the signing key did not ratchet");
    for f in std::fs::read_dir(kf.state.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&material[0]));
    }
    // Third run: the intruder takes everything on the host now.
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 10, "run2");
    let (mac, signer) = steal_keys(&c);
    log.close();
    assert!(mac.epoch >= 2, "epoch {}", mac.epoch);
    let pristine = lines(&c.path);
    let anchors = dir.join("anchors.jsonl");
    write_lines(&anchors, &checkpoint_lines(&c.path));
    let first_public_key = |extra: &[&Path]| {
        let mut a = vec![PathBuf::from("--public-key"), kf.public.clone()];
        for f in extra {
            a.push("--anchor".into());
            a.push(f.to_path_buf());
        }
        a.push(c.path.clone());
        verify_cli(a)
    };
    let (code, out) = first_public_key(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("walked from the first public key through every epoch"),
        "{out}"
    );

    // Rewrite record 3 (epoch 0), re-chain and re-sign all that follows.
    forge(&c.path, "run0-3", &mac, &signer, |v| {
        if v["id"] == "run0-3" {
            v["bot"] = "someone-else".into();
        }
    });
    let l = lines(&c.path);
    let first_bad = l
        .iter()
        .find(|x| x.contains(r#""kind":"checkpoint""#) && seq_of(x) > 3)
        .map(|x| seq_of(x))
        .unwrap();
    let (code, out) = first_public_key(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("TAMPERED") && out.contains(&format!("seq {first_bad}: bad signature")),
        "{out}"
    );

    // A rewrite within the stolen epoch itself is signed and MACed with
    // the keys of that epoch: only the anchors kept off the host tell.
    write_lines(&c.path, &pristine);
    forge(&c.path, "run2-4", &mac, &signer, |v| {
        if v["id"] == "run2-4" {
            v["bot"] = "someone-else".into();
        }
    });
    let (code, out) = first_public_key(&[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = first_public_key(&[&anchors]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("differs from anchor") && out.contains(&*anchors.to_string_lossy()),
        "{out}"
    );
}

/// Copies the log, key state and keys an older botward (909baa2) wrote:
/// two runs, a fixed signing key in `<log>.sign`.
fn old_log(name: &str) -> (PathBuf, Audit) {
    let dir = tmp(name);
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit-909baa2");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::copy(fixture.join("audit.jsonl"), dir.join("audit.jsonl")).unwrap();
    for f in ["key", "pub", "seed", "sign"] {
        let name = format!("audit.jsonl.{f}");
        std::fs::copy(
            fixture.join("state").join(&name),
            dir.join("state").join(&name),
        )
        .unwrap();
    }
    let c = Audit {
        checkpoint_every: 8,
        ..cfg(&dir, 0)
    };
    (dir, c)
}

#[test]
fn a_log_and_key_state_from_before_signing_keys_ratcheted_verify_and_upgrade() {
    let (_dir, c) = old_log("old-state");
    let kf = botward::audit::writer_key_files(&c);
    let old_key = std::fs::read_to_string(&kf.public).unwrap();
    let mut args = key_args(&c);
    args.push(c.path.clone());
    // The old log verifies as it is, and says its key did not ratchet.
    let (code, out) = verify_cli(&args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the signing key did not ratchet"), "{out}");

    // The first start hands over from the fixed key and removes it.
    let log = AuditLog::open(&c).unwrap();
    assert!(
        !kf.sign.exists(),
        "the fixed signing key is still on the host"
    );
    write_records(&log, 20, "upgraded");
    log.close();
    assert_eq!(std::fs::read_to_string(&kf.public).unwrap(), old_key);
    let (code, out) = verify_cli(&args);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("the signing key was fixed up to epoch 1")
            && out.contains("ratchets from epoch 1 on"),
        "{out}"
    );
    // A restart goes on ratcheting.
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 3, "again");
    log.close();
    assert_eq!(verify_cli(&args).0, 0);

    // The key state stolen now cannot re-sign the records before it.
    let (mac, signer) = steal_keys(&c);
    forge(&c.path, "upgraded-2", &mac, &signer, |v| {
        if v["id"] == "upgraded-2" {
            v["decision"] = "allow".into();
        }
    });
    let (code, out) = verify_cli([
        PathBuf::from("--public-key"),
        kf.public.clone(),
        c.path.clone(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad signature"), "{out}");
}

/// Waits (up to 30 s) until the log holds a checkpoint with `reason`
/// after line `after`.
fn wait_for_checkpoint(c: &Audit, after: usize, reason: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let needle = format!(r#""reason":"{reason}""#);
    while !lines(&c.path)
        .iter()
        .skip(after)
        .any(|l| l.contains(r#""kind":"checkpoint""#) && l.contains(&needle))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no {reason} checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ratchets_by_time_seal_each_epoch_and_verify_with_the_first_public_key() {
    let dir = tmp("ratchet-time");
    let c = Audit {
        ratchet_interval: Duration::ZERO,
        ..cfg(&dir, 0)
    };
    let log = AuditLog::open(&c).unwrap();
    for round in 0..3 {
        let before = lines(&c.path).len();
        write_records(&log, 3, &format!("round{round}"));
        // The next tick ratchets: it seals the epoch first.
        wait_for_checkpoint(&c, before, "ratchet");
    }
    log.close();
    let records: Vec<serde_json::Value> = lines(&c.path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Each epoch's last record is a checkpoint naming the next key.
    for w in records.windows(2) {
        if w[1]["epoch"] != w[0]["epoch"] {
            assert_eq!(w[0]["kind"], "checkpoint", "{}", w[0]);
            assert!(w[0]["detail"]["next_public_key"].is_string());
        }
    }
    assert!(records.last().unwrap()["epoch"].as_u64().unwrap() >= 3);
    let kf = botward::audit::writer_key_files(&c);
    let (code, out) = verify_cli([PathBuf::from("--public-key"), kf.public, c.path.clone()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("through every epoch"), "{out}");
}

#[test]
fn a_crash_mid_epoch_is_sealed_with_that_epochs_key_at_the_next_start() {
    let dir = tmp("crash-epoch");
    let c = cfg(&dir, 0);
    let kf = botward::audit::writer_key_files(&c);
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 10, "a");
    log.close();
    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 7, "b");
    // What the disk holds if the host dies now: records not yet sealed,
    // and the key state of this epoch.
    let crashed_log = std::fs::read(&c.path).unwrap();
    let crashed_state = std::fs::read(&kf.state).unwrap();
    log.close();
    std::fs::write(&c.path, &crashed_log).unwrap();
    std::fs::write(&kf.state, &crashed_state).unwrap();
    let mut args = key_args(&c);
    args.push(c.path.clone());
    assert_eq!(verify_cli(&args).0, 2);

    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 3, "c");
    log.close();
    let l = lines(&c.path);
    let seal = l
        .iter()
        .position(|x| x.contains(r#""reason":"ratchet""#))
        .unwrap();
    assert!(l[seal - 1].contains("\"b-6\""), "{}", l[seal - 1]);
    let (code, out) = verify_cli(&args);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn an_upgrade_that_stops_before_saving_its_key_state_goes_on_at_the_next_start() {
    let (_dir, c) = old_log("old-halfway");
    let kf = botward::audit::writer_key_files(&c);
    // The key state cannot be replaced: its temporary file's name is taken.
    let mut tmp = kf.state.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::create_dir(&tmp).unwrap();
    assert!(AuditLog::open(&c).is_err());
    // The checkpoint that hands over from the fixed key was written; the key
    // it names was never saved.
    let last = lines(&c.path).pop().unwrap();
    assert!(last.contains(r#""reason":"ratchet""#), "{last}");
    std::fs::remove_dir(&tmp).unwrap();

    let log = AuditLog::open(&c).unwrap();
    write_records(&log, 5, "after");
    log.close();
    assert!(!kf.sign.exists());
    let mut args = key_args(&c);
    args.push(c.path.clone());
    let (code, out) = verify_cli(&args);
    assert_eq!(code, 0, "{out}");
}
