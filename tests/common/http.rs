//! Calling botward as a bot does: botward's own Rust client and curl.
//! (The Python clients are driven by tests/clients.rs.)

use std::process::Command;

use ::botward::client::{Answer, ClientSettings};
use serde_json::Value;

use super::{BotCert, Botward, Harness};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl Botward {
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.tcp)
    }

    pub fn settings(&self, h: &Harness, bot: &BotCert) -> ClientSettings {
        ClientSettings {
            addr: format!("https://{}", self.tcp),
            cert: bot.cert.clone(),
            key: bot.key.clone(),
            ca: h.ca_pem(),
        }
    }

    /// One request with botward's own client, as `bot`.
    pub fn call(&self, h: &Harness, bot: &BotCert, method: &str, path: &str) -> Answer {
        let s = self.settings(h, bot);
        rt().block_on(::botward::client::call(&s, method, path))
            .expect("request")
    }

    pub fn get_json(&self, h: &Harness, bot: &BotCert, path: &str) -> (u16, Value) {
        let a = self.call(h, bot, "GET", path);
        let v = serde_json::from_slice(a.body.expose_secret()).unwrap_or(Value::Null);
        (a.status, v)
    }
}

/// Runs curl as a bot would and returns (HTTP status, body). Status 0 means
/// the TLS handshake failed.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

pub fn curl_as(h: &Harness, bot: &BotCert, url: &str, extra: &[&str]) -> (u16, String) {
    let (c, k, ca) = (
        bot.cert.display().to_string(),
        bot.key.display().to_string(),
        h.ca_pem().display().to_string(),
    );
    let mut args = vec![
        "--cert",
        c.as_str(),
        "--key",
        k.as_str(),
        "--cacert",
        ca.as_str(),
    ];
    args.extend_from_slice(extra);
    args.push(url);
    curl(&args)
}
