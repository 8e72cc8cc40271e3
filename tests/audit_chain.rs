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
