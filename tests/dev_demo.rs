//! `botward dev`: one command gives a working demo whose printed lines work
//! as pasted, and Ctrl-C cleans everything up.

#![allow(unsafe_code)] // libc calls on the processes under test

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_demo_works_as_printed_and_cleans_up() {
    if common::bao_or_skip("dev-demo").is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("botward-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = botward::dev::free_port();
    let mut child = Command::new(common::botward_bin())
        .args(["dev", "--dir"])
        .arg(&dir)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("Ctrl-C")) {
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("the demo did not come up: {lines:#?}");
            }
        }
    }
    let run = |needle: &str| {
        let line = lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}: {lines:#?}"));
        let out = Command::new("sh")
            .arg("-c")
            .arg(line.trim())
            .env_remove("CURL_CA_BUNDLE")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run("?field=password'");
    assert_eq!(code, Some(0));
    assert!(out.starts_with("demo-"), "{out}");
    let (code, out) = run("get erp-db --field password");
    assert_eq!(code, Some(0));
    assert!(out.starts_with("demo-"), "{out}");
    let (_, out) = run("/v1/secrets/sftp");
    assert!(out.contains("\"forbidden\""), "{out}");
    let (code, out) = run("BOTWARD_ADDR=unix://");
    assert_eq!(code, Some(0));
    assert!(out.contains("erp_invoice"), "{out}");

    // Ctrl-C: botward and OpenBao stop, the folder is gone.
    let config = std::fs::read_to_string(dir.join("botward.toml")).unwrap();
    let bao_addr = config
        .lines()
        .find_map(|l| l.strip_prefix("addresses = [\""))
        .unwrap()
        .trim_end_matches("\"]")
        .to_owned();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "the demo folder was left behind");
    let bao_port: u16 = bao_addr.rsplit(':').next().unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", bao_port)).is_err(),
        "OpenBao is still running"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "botward is still running"
    );
}
