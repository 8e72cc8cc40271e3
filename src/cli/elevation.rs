//! `botward elevation list|approve|deny|revoke`: the approver's side. It
//! reads requests from the Vault mailbox (or a file), signs decisions with
//! the approver's key, and writes them to the mailbox (or a file). Vault's
//! own audit log then shows which human token wrote each decision, beside
//! the signature botward checks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use zeroize::Zeroizing;

use super::args::{ElevationCommand, MailboxArgs, SignerArgs};
use crate::app::{EX_UNAVAILABLE, EX_USAGE};
use crate::elevation::statement::{sign, Statement, Verdict, STATEMENT_TYPE};

pub(super) async fn elevation(command: ElevationCommand) -> ExitCode {
    crate::tls::install_provider();
    let result = match command {
        ElevationCommand::List {
            mailbox,
            pending,
            format,
        } => list(&mailbox, pending, &format).await,
        ElevationCommand::Approve {
            id,
            signer,
            duration,
        } => decide(&id, Verdict::Approve, &signer, duration.as_deref()).await,
        ElevationCommand::Deny { id, signer } => decide(&id, Verdict::Deny, &signer, None).await,
        ElevationCommand::Revoke { id, signer } => {
            decide(&id, Verdict::Revoke, &signer, None).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("botward elevation: {m}");
            ExitCode::from(EX_USAGE)
        }
        Err(Failure::Vault(m)) => {
            eprintln!("botward elevation: {m}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

enum Failure {
    Usage(String),
    Vault(String),
}

async fn list(args: &MailboxArgs, pending: bool, format: &str) -> Result<(), Failure> {
    if !matches!(format, "text" | "json") {
        return Err(Failure::Usage("--format is text or json".into()));
    }
    let mb = Mailbox::connect(args)?;
    let mut rows = Vec::new();
    for key in mb.list("requests").await? {
        if key.ends_with('/') || !crate::api::route::is_elevation_id(&key) {
            continue;
        }
        if let Some(doc) = mb.get(&format!("requests/{key}")).await? {
            if !pending || doc["status"] == "pending" {
                rows.push(doc);
            }
        }
    }
    rows.sort_by(|a, b| b["created"].as_str().cmp(&a["created"].as_str()));
    if format == "json" {
        println!("{}", serde_json::to_string(&rows).unwrap_or_default());
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no {}elevation requests",
            if pending { "pending " } else { "" }
        );
        return Ok(());
    }
    let s = |v: &Value, k: &str| crate::audit::truncate(v[k].as_str().unwrap_or("-"), 80);
    for r in &rows {
        println!(
            "{}  {:<8}  bot {}  owner {}  team {}  secret {}  {} min  host {}  ticket {}  approvals {}/{}",
            s(r, "id"),
            s(r, "status"),
            s(r, "bot"),
            s(r, "owner"),
            s(r, "team"),
            s(r, "secret"),
            r["duration_s"].as_u64().unwrap_or(0).div_ceil(60),
            s(r, "host"),
            s(r, "ticket"),
            r["approvers"].as_array().map_or(0, Vec::len),
            r["approvals"].as_u64().unwrap_or(1),
        );
        println!("    reason: {}", s(r, "reason"));
    }
    Ok(())
}

async fn decide(
    id: &str,
    verdict: Verdict,
    signer: &SignerArgs,
    duration: Option<&str>,
) -> Result<(), Failure> {
    if !crate::api::route::is_elevation_id(id) {
        return Err(Failure::Usage(
            "an elevation ID is 32 lowercase hex digits".into(),
        ));
    }
    let approver = match &signer.name {
        Some(n) => n.clone(),
        None => name_from_cert(&signer.cert)?,
    };
    // The name goes into the mailbox path: only the form config accepts.
    if !crate::config::is_person_name(&approver) {
        return Err(Failure::Usage(format!(
            "approver name {approver:?} must be letters, digits, '@', '.', '_', '-' or '+', as in [[approver]] name"
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&signer.key)
        .map_err(|e| Failure::Usage(format!("{}: {e}", signer.key.display())))?;
    let needs_vault = signer.request.is_none() || signer.out.is_none();
    let mb = if needs_vault {
        Some(Mailbox::connect(&signer.mailbox)?)
    } else {
        None
    };
    let request = match (&signer.request, &mb) {
        (Some(file), _) => read_request(file)?,
        (None, Some(mb)) => mb
            .get(&format!("requests/{id}"))
            .await?
            .ok_or_else(|| Failure::Usage(format!("no request {id} in the mailbox")))?,
        (None, None) => unreachable!("a mailbox is opened when no request file is given"),
    };
    if request["id"] != id {
        return Err(Failure::Usage(format!("the request read is not {id}")));
    }
    let statement = statement(id, verdict, &request, &approver, duration)?;
    let signed = sign(&statement, &key).map_err(Failure::Usage)?;
    drop(key);
    let json = serde_json::to_value(&signed).unwrap_or_default();
    let window = match (statement.not_before, statement.not_after) {
        (Some(a), Some(b)) => format!(", window {a} to {b}"),
        _ => String::new(),
    };
    let what = format!(
        "{} {id} (bot {}, secret {}, host {}){window}",
        verdict.as_str(),
        statement.bot,
        statement.secret,
        statement.host
    );
    match (&signer.out, &mb) {
        (Some(out), _) => {
            let text = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
            std::fs::write(out, text)
                .map_err(|e| Failure::Usage(format!("{}: {e}", out.display())))?;
            println!("signed: {what}; written to {}", out.display());
        }
        (None, Some(mb)) => {
            mb.put(&format!("decisions/{id}/{approver}"), &json).await?;
            println!("signed: {what}; written to the mailbox");
        }
        (None, None) => unreachable!("a mailbox is opened when no --out is given"),
    }
    Ok(())
}

/// The statement an approver signs for `request`.
fn statement(
    id: &str,
    verdict: Verdict,
    request: &Value,
    approver: &str,
    duration: Option<&str>,
) -> Result<Statement, Failure> {
    let field = |k: &str| {
        request[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::Usage(format!("the request has no {k}")))
    };
    let now = Timestamp::now();
    let window = if verdict == Verdict::Approve {
        let asked = Duration::from_secs(request["duration_s"].as_u64().unwrap_or(0));
        let length = match duration {
            None => asked,
            Some(d) => {
                let d = crate::config::parse_duration(d)
                    .map_err(|e| Failure::Usage(format!("--duration: {e}")))?;
                if d > asked {
                    return Err(Failure::Usage(format!(
                        "--duration is longer than the {} s requested",
                        asked.as_secs()
                    )));
                }
                d
            }
        };
        if length.is_zero() {
            return Err(Failure::Usage("the window would be empty".into()));
        }
        let length = SignedDuration::try_from(length)
            .map_err(|_| Failure::Usage("the window is too long".into()))?;
        Some((now, now + length))
    } else {
        None
    };
    Ok(Statement {
        kind: STATEMENT_TYPE.into(),
        decision: verdict,
        request: id.to_owned(),
        bot: field("bot")?,
        secret: field("secret")?,
        host: field("host")?,
        ticket: field("ticket")?,
        not_before: window.map(|w| w.0),
        not_after: window.map(|w| w.1),
        approver: approver.to_owned(),
        signed_at: now,
    })
}

fn read_request(file: &Path) -> Result<Value, Failure> {
    let text =
        std::fs::read(file).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    serde_json::from_slice(&text)
        .map_err(|e| Failure::Usage(format!("{}: not a request: {e}", file.display())))
}

/// The certificate's e-mail address, else its common name.
fn name_from_cert(path: &Path) -> Result<String, Failure> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = CertificateDer::from_pem_file(path)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|_| Failure::Usage(format!("{}: not an X.509 certificate", path.display())))?;
    let email = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::RFC822Name(e) => Some((*e).to_owned()),
                _ => None,
            })
        });
    let cn = || {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .map(str::to_owned)
    };
    email.or_else(cn).ok_or_else(|| {
        Failure::Usage(format!(
            "{}: no e-mail address or common name; give --name",
            path.display()
        ))
    })
}

/// Whether `addr` is an `http://` address of a host other than this one.
fn plain_http_off_host(addr: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(addr) else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    url.scheme() == "http" && !loopback
}

/// The mailbox in Vault, reached with the approver's own token.
struct Mailbox {
    http: reqwest::Client,
    addr: String,
    token: Zeroizing<String>,
    mount: String,
    prefix: String,
}

impl Mailbox {
    fn connect(args: &MailboxArgs) -> Result<Mailbox, Failure> {
        let env = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        let addr = args
            .vault_addr
            .clone()
            .or_else(|| env(&["VAULT_ADDR", "BAO_ADDR"]))
            .ok_or_else(|| Failure::Usage("give --vault-addr (or set VAULT_ADDR)".into()))?;
        let ca = args
            .ca_cert
            .clone()
            .or_else(|| env(&["VAULT_CACERT", "BAO_CACERT"]).map(PathBuf::from));
        let token = match env(&["VAULT_TOKEN", "BAO_TOKEN"]) {
            Some(t) => Zeroizing::new(t),
            None => token_file()?,
        };
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10));
        if let Some(ca) = &ca {
            let tls = crate::tls::pinned_client_config(ca, None)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            b = b.tls_backend_preconfigured(tls);
        } else if addr.starts_with("https://") {
            return Err(Failure::Usage(
                "an https address needs --ca-cert (or VAULT_CACERT)".into(),
            ));
        }
        let http = b
            .build()
            .map_err(|_| Failure::Usage("cannot build the HTTP client".into()))?;
        if plain_http_off_host(&addr) {
            eprintln!(
                "botward: warning: {} is plain http to another machine: the Vault token and the decision cross the network unencrypted; use https",
                crate::text::escape(&addr)
            );
        }
        Ok(Mailbox {
            http,
            addr: addr.trim_end_matches('/').to_owned(),
            token,
            mount: args.mount.trim_matches('/').to_owned(),
            prefix: args.prefix.trim_matches('/').to_owned(),
        })
    }

    async fn send(
        &self,
        method: &str,
        url: String,
        body: Option<&Value>,
    ) -> Result<Option<Value>, Failure> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut token = reqwest::header::HeaderValue::from_str(self.token.as_str())
            .map_err(|_| Failure::Usage("the Vault token is not a valid header value".into()))?;
        token.set_sensitive(true);
        let mut req = self
            .http
            .request(method, &url)
            .header("X-Vault-Token", token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b).unwrap_or_default());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Vault(format!("cannot reach Vault: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure::Vault(format!("reading Vault's answer: {}", e.without_url())))?;
        if !(200..300).contains(&status) {
            let errors: Vec<String> = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| serde_json::from_value(v["errors"].clone()).ok())
                .unwrap_or_default();
            return Err(Failure::Vault(format!(
                "Vault answered {status}: {}",
                crate::audit::truncate(&errors.join("; "), 300)
            )));
        }
        Ok(serde_json::from_slice(&bytes).ok())
    }

    async fn list(&self, under: &str) -> Result<Vec<String>, Failure> {
        let url = format!(
            "{}/v1/{}/metadata/{}/{under}",
            self.addr, self.mount, self.prefix
        );
        let v = self.send("LIST", url, None).await?;
        Ok(
            v.and_then(|v| serde_json::from_value(v["data"]["keys"].clone()).ok())
                .unwrap_or_default(),
        )
    }

    async fn get(&self, path: &str) -> Result<Option<Value>, Failure> {
        let url = format!(
            "{}/v1/{}/data/{}/{path}",
            self.addr, self.mount, self.prefix
        );
        Ok(self
            .send("GET", url, None)
            .await?
            .map(|mut v| v["data"]["data"].take())
            .filter(|d| !d.is_null()))
    }

    async fn put(&self, path: &str, data: &Value) -> Result<(), Failure> {
        let url = format!(
            "{}/v1/{}/data/{}/{path}",
            self.addr, self.mount, self.prefix
        );
        self.send("POST", url, Some(&serde_json::json!({ "data": data })))
            .await
            .map(drop)
    }
}

/// The token in `~/.vault-token`.
fn token_file() -> Result<Zeroizing<String>, Failure> {
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    let path = home
        .map(|h| PathBuf::from(h).join(".vault-token"))
        .ok_or_else(|| Failure::Usage("no Vault token: set VAULT_TOKEN".into()))?;
    let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|_| {
        Failure::Usage(
            "no Vault token: set VAULT_TOKEN or BAO_TOKEN, or log in so that ~/.vault-token exists"
                .into(),
        )
    })?);
    Ok(Zeroizing::new(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::plain_http_off_host;

    #[test]
    fn plain_http_is_told_only_off_this_host() {
        for off in [
            "http://vault.corp.example:8200",
            "http://10.0.0.5:8200",
            "http://[2001:db8::1]:8200",
        ] {
            assert!(plain_http_off_host(off), "{off}");
        }
        for ok in [
            "https://vault.corp.example:8200",
            "http://127.0.0.1:8200",
            "http://127.8.0.1:8200",
            "http://localhost:8200",
            "http://[::1]:8200",
        ] {
            assert!(!plain_http_off_host(ok), "{ok}");
        }
    }
}
