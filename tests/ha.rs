//! Vault high availability and TLS: a real three-node OpenBao raft cluster
//! that loses its leader mid-stream, and certificate login against a
//! CA-pinned TLS listener.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use botward::certs::Validity;
use common::*;

/// The `bao` CLI against `addr` with `token`.
fn bao(addr: &str, token: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut c = Command::new(botward::dev::find_bao().unwrap())
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", token)
        .env_remove("BAO_CACERT")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let (Some(s), Some(mut p)) = (stdin, c.stdin.take()) {
        p.write_all(s.as_bytes()).unwrap();
    }
    let out = c.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

struct Node {
    child: Option<Child>,
    addr: String,
}

/// Three `bao server` processes with raft storage, initialised and unsealed.
struct Cluster {
    nodes: Vec<Node>,
    root: String,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let bin = botward::dev::find_bao().unwrap();
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| (botward::dev::free_port(), botward::dev::free_port()))
            .collect();
        let joins: String = ports
            .iter()
            .map(|(p, _)| {
                format!("  retry_join {{\n    leader_api_addr = \"http://127.0.0.1:{p}\"\n  }}\n")
            })
            .collect();
        let mut nodes = Vec::new();
        for (i, (api, cluster)) in ports.iter().enumerate() {
            let nd = dir.join(format!("node{i}"));
            std::fs::create_dir_all(nd.join("data")).unwrap();
            let hcl = format!(
                "storage \"raft\" {{\n  path = \"{data}\"\n  node_id = \"node{i}\"\n{joins}}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{api}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
                 api_addr = \"http://127.0.0.1:{api}\"\ncluster_addr = \"https://127.0.0.1:{cluster}\"\ndisable_mlock = true\n",
                data = nd.join("data").display()
            );
            std::fs::write(nd.join("config.hcl"), hcl).unwrap();
            let log = std::fs::File::create(nd.join("bao.log")).unwrap();
            let child = Command::new(&bin)
                .args(["server", "-config"])
                .arg(nd.join("config.hcl"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            nodes.push(Node {
                child: Some(child),
                addr: format!("http://127.0.0.1:{api}"),
            });
        }
        let first = nodes[0].addr.clone();
        wait_for(Duration::from_secs(20), "node0 to listen", || {
            bao(&first, "", &["status"], None).is_ok()
                || bao(&first, "", &["status"], None)
                    .is_err_and(|e| !e.contains("connection refused"))
        });
        let init = bao(
            &first,
            "",
            &[
                "operator",
                "init",
                "-key-shares=1",
                "-key-threshold=1",
                "-format=json",
            ],
            None,
        )
        .expect("init");
        let init: serde_json::Value = serde_json::from_str(&init).unwrap();
        let key = init["unseal_keys_b64"][0].as_str().unwrap().to_owned();
        let root = init["root_token"].as_str().unwrap().to_owned();
        bao(&first, "", &["operator", "unseal", &key], None).expect("unseal node0");
        wait_for(Duration::from_secs(30), "node0 to become active", || {
            bao(&first, &root, &["read", "sys/leader"], None).is_ok_and(|o| o.contains("true"))
        });
        for n in &nodes[1..] {
            // Each joins through retry_join, then takes the cluster's key.
            wait_for(Duration::from_secs(30), "a node to join and unseal", || {
                let _ = bao(&n.addr, "", &["operator", "unseal", &key], None);
                bao(&n.addr, "", &["status", "-format=json"], None)
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                    .is_some_and(|s| s["sealed"] == false)
            });
        }
        wait_for(Duration::from_secs(30), "three raft voters", || {
            bao(
                &first,
                &root,
                &["operator", "raft", "list-peers", "-format=json"],
                None,
            )
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["data"]["config"]["servers"].as_array().map(|a| a.len()))
                == Some(3)
        });
        Cluster {
            nodes,
            root,
            dir: dir.to_owned(),
        }
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        // Any live node serves: standbys forward to the active node.
        let mut last = String::new();
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            match bao(&n.addr, &self.root, args, stdin) {
                Ok(o) => return o,
                Err(e) => last = e,
            }
        }
        panic!("bao {args:?}: {last}");
    }

    fn leader(&self) -> usize {
        let out = self.cli(&["read", "-format=json", "sys/leader"], None);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let addr = v["data"]["leader_address"].as_str().unwrap().to_owned();
        self.nodes
            .iter()
            .position(|n| n.addr == addr)
            .unwrap_or_else(|| panic!("leader {addr} is not a node"))
    }
}

#[test]
fn botward_follows_the_raft_cluster_through_a_leader_loss() {
    let Some(h) = Harness::new("raft") else {
        return;
    };
    let mut cluster = Cluster::start(&h.dir.join("raft"));
    cluster.cli(&["secrets", "enable", "-path=secret", "kv-v2"], None);
    cluster.cli(
        &[
            "kv",
            "put",
            "-mount=secret",
            "rpa/erp-db",
            "username=erp",
            &format!("password={}", h.erp_password),
        ],
        None,
    );
    cluster.cli(&["auth", "enable", "approle"], None);
    cluster.cli(
        &["policy", "write", "botward", "-"],
        Some("path \"secret/data/rpa/*\" { capabilities = [\"read\"] }\n"),
    );
    cluster.cli(
        &[
            "write",
            "auth/approle/role/botward",
            "token_policies=botward",
            "token_ttl=1h",
        ],
        None,
    );
    let role_id = cluster.cli(
        &[
            "read",
            "-field=role_id",
            "auth/approle/role/botward/role-id",
        ],
        None,
    );
    let secret_id = cluster.cli(
        &[
            "write",
            "-f",
            "-field=secret_id",
            "auth/approle/role/botward/secret-id",
        ],
        None,
    );
    std::fs::write(&h.role_id, role_id.trim()).unwrap();
    std::fs::write(&h.secret_id, secret_id.trim()).unwrap();

    let addresses = cluster
        .nodes
        .iter()
        .map(|n| format!("\"{}\"", n.addr))
        .collect::<Vec<_>>()
        .join(", ");
    let config = h
        .config(Auth::AppRole, &h.audit_path(), "")
        .replace(
            &format!("addresses = [\"{}\"]", h.bao.addr),
            &format!("addresses = [{addresses}]"),
        )
        .replace("timeout_ms = 2000", "timeout_ms = 1000");
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);

    // A stream of requests, one every 50 ms, while the leader dies.
    let settings = b.settings(&h, &bot);
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, u16)>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let streamer = std::thread::spawn(move || {
        let rt = rt();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let status = rt
                .block_on(botward::client::call(
                    &settings,
                    "GET",
                    "/v1/secrets/erp-db",
                ))
                .map(|a| a.status)
                .unwrap_or(0);
            let _ = tx.send((Instant::now(), status));
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let leader = cluster.leader();
    let killed_at = Instant::now();
    if let Some(mut c) = cluster.nodes[leader].child.take() {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    // Wait for recovery: 20 successes in a row after the kill.
    let mut after: Vec<(Instant, u16)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = rx.recv_timeout(Duration::from_secs(1)) {
            if r.0 > killed_at {
                after.push(r);
            }
        }
        if after.len() >= 20 && after[after.len() - 20..].iter().all(|(_, s)| *s == 200) {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    streamer.join().unwrap();
    let first_ok = after.iter().position(|(_, s)| *s == 200);
    let failed = after.iter().filter(|(_, s)| *s != 200).count();
    let recovered_in = first_ok.map(|i| after[i].0 - killed_at);
    eprintln!(
        "raft failover: leader node{leader} killed; first success after {:?}; {failed} of {} requests failed meanwhile; statuses seen: {:?}",
        recovered_in,
        after.len(),
        after.iter().map(|(_, s)| *s).collect::<std::collections::BTreeSet<_>>()
    );
    assert!(
        after.len() >= 20 && after[after.len() - 20..].iter().all(|(_, s)| *s == 200),
        "botward did not recover"
    );
    assert!(
        after.iter().all(|(_, s)| matches!(s, 200 | 503)),
        "failures during the election are clean 503s"
    );

    // Health tells the bot only that Vault is usable; each address is
    // reported to the operator's log.
    let (status, v) = b.get_json(&h, &bot, "/v1/health");
    assert_eq!(status, 200);
    assert_eq!(v["vault"], "ok");
    assert!(v.get("nodes").is_none(), "{v}");
    for n in &cluster.nodes {
        assert!(!v.to_string().contains(&n.addr), "{v}");
    }
    let log = b.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("Vault health"))
        .expect("a Vault health line in the log");
    assert_eq!(line.matches(r#""reachable":true"#).count(), 2, "{line}");
    for n in &cluster.nodes {
        assert!(line.contains(&n.addr), "{line}");
    }
}

#[test]
fn cert_login_against_a_pinned_tls_listener() {
    let Some(h) = Harness::new("certauth") else {
        return;
    };
    let tls_bao =
        botward::dev::DevBao::start_tls(&h.bao.bao, &h.dir.join("tls-bao")).expect("bao -dev-tls");
    tls_bao
        .kv_put("rpa/erp-db", &[("password", &h.erp_password)])
        .unwrap();
    tls_bao
        .cli(
            &["policy", "write", "botward", "-"],
            Some("path \"secret/data/rpa/*\" { capabilities = [\"read\"] }\n"),
        )
        .unwrap();
    tls_bao.cli(&["auth", "enable", "cert"], None).unwrap();
    tls_bao
        .cli(
            &[
                "write",
                "auth/cert/certs/botward",
                &format!("certificate=@{}", h.ca_pem().display()),
                "token_policies=botward",
                "token_ttl=1h",
            ],
            None,
        )
        .unwrap();
    // botward's own client certificate for Vault, from the test CA.
    let issued =
        h.ca.issue_client(&[], "botward-sidecar", Validity::default())
            .unwrap();
    let (cert, key) = issued.write(&h.tls, "vault-client").unwrap();
    let auth = format!(
        "method = \"cert\"\nname = \"botward\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
        cert.display(),
        key.display()
    );
    let pinned = |ca: &Path| {
        h.config(Auth::RootToken, &h.audit_path(), "")
            .replace(
                &format!("addresses = [\"{}\"]", h.bao.addr),
                &format!(
                    "addresses = [\"{}\"]\nca = \"{}\"",
                    tls_bao.addr,
                    ca.display()
                ),
            )
            .replace(
                &format!(
                    "method = \"token\"\ntoken_file = \"{}\"",
                    h.token_file.display()
                ),
                &auth,
            )
    };
    let b = h.start(&pinned(tls_bao.ca.as_ref().unwrap()));
    let (status, v) = b.get_json(&h, &h.bot("invoice-bot"), "/v1/secrets/erp-db");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["password"], h.erp_password.as_str());
    drop(b);

    // Pinned to another CA, botward does not trust the listener.
    let b = h.start(&pinned(&h.ca_pem()));
    let (status, v) = b.get_json(&h, &h.bot("invoice-bot"), "/v1/secrets/erp-db");
    assert_eq!(status, 503, "{v}");
}
