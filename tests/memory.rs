//! Zero residue: after its use, no secret value is left anywhere in
//! botward's memory, and the process cannot be dumped or traced by others.

#![allow(unsafe_code)] // libc calls on the processes under test

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use common::*;

/// Counts occurrences of `needle` in every readable mapping of `pid`.
fn scan(pid: u32, needle: &[u8]) -> usize {
    scan_all(pid, &[needle])
}

/// Counts occurrences of every one of `needles` (none empty) in every
/// readable mapping of `pid`, reading its memory once.
fn scan_all(pid: u32, needles: &[&[u8]]) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut found = 0;
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let name = line.split_whitespace().nth(5).unwrap_or("");
        if !perms.starts_with('r') || name.starts_with("[v") {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        found += count_in(&buf, needles);
    }
    found
}

/// Occurrences of `needles` in `buf`, overlapping ones included.
fn count_in(buf: &[u8], needles: &[&[u8]]) -> usize {
    let mut first = [false; 256];
    for n in needles {
        first[n[0] as usize] = true;
    }
    let mut found = 0;
    for (i, b) in buf.iter().enumerate() {
        if first[*b as usize] {
            let rest = &buf[i..];
            found += needles.iter().filter(|n| rest.starts_with(n)).count();
        }
    }
    found
}

/// How long botward may take to drop its idle Vault connections (idle for
/// 5 s, reaped by a timer of the same period) and with them their buffers.
const RELEASE_LIMIT: Duration = Duration::from_secs(60);

/// Scans `pid` for `needles` until none is found or `limit` has passed,
/// and returns the occurrences the last scan found. A slow host only makes
/// this wait longer.
fn scan_until_gone(pid: u32, needles: &[&[u8]], limit: Duration) -> usize {
    let start = Instant::now();
    // Nothing can be gone before the idle connections are.
    std::thread::sleep(Duration::from_secs(5));
    loop {
        let found = scan_all(pid, needles);
        if found == 0 || start.elapsed() > limit {
            return found;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn residue_after_reads(h: &Harness, wipe: bool, reads: usize) -> usize {
    let config = h.config(Auth::AppRole, &h.audit_path(), "").replace(
        "[audit]",
        &format!("[hardening]\nwipe_freed_memory = {wipe}\n\n[audit]"),
    );
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");
    for i in 0..reads {
        let path = if i % 2 == 0 {
            "/v1/secrets/erp-db"
        } else {
            "/v1/secrets/erp-db?field=password"
        };
        assert_eq!(b.call(h, &bot, "GET", path).status, 200);
    }
    // Bot connections closed with each call; idle Vault connections close
    // after 5 s and free their buffers. With wiping off copies stay, and
    // their count is only reported.
    if wipe {
        scan_until_gone(b.pid(), &[h.erp_password.as_bytes()], RELEASE_LIMIT)
    } else {
        std::thread::sleep(Duration::from_secs(7));
        scan(b.pid(), h.erp_password.as_bytes())
    }
}

#[cfg(target_os = "linux")]
#[test]
fn no_copy_of_a_kv_secret_survives_in_memory() {
    let Some(h) = Harness::new("memscan") else {
        return;
    };
    let reads = 50;
    let without = residue_after_reads(&h, false, reads);
    let with = residue_after_reads(&h, true, reads);
    eprintln!("memory scan after {reads} reads: {without} occurrences with wiping off, {with} with wiping on");
    assert_eq!(
        with, 0,
        "secret value found {with} times in botward's memory"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn an_evicted_cache_entry_leaves_no_copy_in_memory() {
    let Some(h) = Harness::new("memscan-cache") else {
        return;
    };
    let config = h.config(Auth::AppRole, &h.audit_path(), "");
    let kv = "path = \"rpa/erp-db\"\n";
    assert!(config.contains(kv));
    // A TTL far longer than the test: the entry goes when a reload empties
    // the cache, not when the host is fast enough.
    let b = h.start(&config.replace(kv, &format!("{kv}cache_ttl = \"1h\"\n")));
    let bot = h.bot("invoice-bot");
    for _ in 0..20 {
        assert_eq!(b.call(&h, &bot, "GET", "/v1/secrets/erp-db").status, 200);
    }
    // While cached, the value is in memory: the scan finds what is there.
    let cached = scan(b.pid(), h.erp_password.as_bytes());
    assert!(
        cached > 0,
        "the cached value should be found while it is cached"
    );
    b.signal(libc::SIGHUP);
    wait_for_record(&h.audit_path(), Duration::from_secs(20), |r| {
        r["kind"] == "config.reload"
    });
    // Idle Vault connections, which held the last response, close after 5 s.
    let after = scan_until_gone(b.pid(), &[h.erp_password.as_bytes()], RELEASE_LIMIT);
    eprintln!("memory scan: {cached} copies while cached, {after} after eviction");
    assert_eq!(after, 0, "the evicted value is still in memory");
}

#[cfg(target_os = "linux")]
#[test]
fn the_process_is_hardened() {
    let Some(h) = Harness::new("harden") else {
        return;
    };
    let b = h.start(&h.config(Auth::AppRole, &h.audit_path(), ""));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", b.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
    let start = audit_records(&h.audit_path())
        .into_iter()
        .find(|r| r["kind"] == "server.start")
        .unwrap();
    assert_eq!(start["detail"]["hardening"]["dumpable"], false, "{start}");
    if unsafe { libc::geteuid() } == 0 {
        // Root has CAP_IPC_LOCK: memory is locked.
        let status = std::fs::read_to_string(format!("/proc/{}/status", b.pid())).unwrap();
        let locked = status.lines().find(|l| l.starts_with("VmLck:")).unwrap();
        let kb: u64 = locked.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(kb > 0, "{locked}");
        assert_eq!(start["detail"]["hardening"]["memory_locked"], true);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_replaced_vault_token_is_wiped_from_memory() {
    let Some(h) = Harness::new("token-wipe") else {
        return;
    };
    let old_token = format!("old-token-{}", random_hex(16));
    let new_token = format!("new-token-{}", random_hex(16));
    h.bao
        .cli(
            &[
                "token",
                "create",
                &format!("-id={old_token}"),
                "-policy=botward",
                "-ttl=1h",
            ],
            None,
        )
        .unwrap();
    std::fs::write(&h.token_file, &old_token).unwrap();
    let b = h.start(&h.config(Auth::RootToken, &h.audit_path(), ""));
    let bot = h.bot("invoice-bot");
    assert_eq!(b.call(&h, &bot, "GET", "/v1/secrets/erp-db").status, 200);
    // The live token is in memory: the scan does find what is there.
    assert!(scan(b.pid(), old_token.as_bytes()) > 0);

    // Ops rotate the token: revoke the old one, write a new one.
    h.bao
        .cli(
            &[
                "token",
                "create",
                &format!("-id={new_token}"),
                "-policy=botward",
                "-ttl=1h",
            ],
            None,
        )
        .unwrap();
    std::fs::write(&h.token_file, &new_token).unwrap();
    h.bao.cli(&["token", "revoke", &old_token], None).unwrap();
    assert_eq!(b.call(&h, &bot, "GET", "/v1/secrets/erp-db").status, 200);
    let old_left = scan_until_gone(b.pid(), &[old_token.as_bytes()], RELEASE_LIMIT);
    assert!(scan(b.pid(), new_token.as_bytes()) > 0);
    assert_eq!(old_left, 0, "the replaced token is still in memory");
}

#[cfg(target_os = "linux")]
#[test]
fn released_database_credentials_leave_no_copy_in_memory() {
    let Some(h) = Harness::new("memscan-dyn") else {
        return;
    };
    let Some(pg) = Postgres::start("memscan-dyn") else {
        return;
    };
    h.enable_database(&pg, "1h");
    let config = h
        .config(Auth::AppRole, &h.audit_path(), "\n[[secret]]\nname = \"erp-db-login\"\nkind = \"dynamic\"\npath = \"database/creds/erp-readonly\"\n")
        .replace(r#"secrets = ["erp-db"]"#, r#"secrets = ["erp-db", "erp-db-login"]"#);
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");
    let mut passwords = Vec::new();
    for _ in 0..10 {
        let (status, v) = b.get_json(&h, &bot, "/v1/secrets/erp-db-login");
        assert_eq!(status, 200, "{v}");
        passwords.push(v["data"]["password"].as_str().unwrap().to_owned());
        let lease = v["lease"]["id"].as_str().unwrap();
        let a = b.call(
            &h,
            &bot,
            "DELETE",
            &format!("/v1/leases/{}", botward::client::encode(lease)),
        );
        assert_eq!(a.status, 204);
    }
    let needles: Vec<&[u8]> = passwords.iter().map(|p| p.as_bytes()).collect();
    let found = scan_until_gone(b.pid(), &needles, RELEASE_LIMIT);
    eprintln!("memory scan: {found} copies of 10 released database passwords");
    assert_eq!(
        found, 0,
        "released credentials are still in botward's memory"
    );
}

#[test]
fn the_scan_counts_every_needle_overlapping_ones_too() {
    assert_eq!(count_in(b"aaab-xaab", &[b"aa", b"ab"]), 5);
    assert_eq!(count_in(b"", &[b"aa"]), 0);
}
