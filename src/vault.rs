//! The Vault (or OpenBao) client: login, token renewal, reads and failover,
//! wrapped so that no token or secret value can reach a log or an error.
//!
//! vaultrs keeps the token in plain `String`s inside `VaultClient` (its
//! settings and its middleware) and derives `Debug` on both. Those clients
//! live only inside [`Session`], which has no `Debug` and wipes both copies
//! when a new login replaces it. vaultrs errors are reduced to
//! [`VaultError`], which keeps status codes and Vault's error strings but never
//! a response body.
//!
//! A token botward got by logging in (AppRole, cert) is revoked with
//! `auth/token/revoke-self` once botward no longer needs it: when a newer
//! login replaced it, or its client was replaced by a reload, and the last
//! request using it and the last lease issued under it are gone (Vault
//! revokes a token's leases with it), and at shutdown. A token from
//! `token_file` is the operator's and is never revoked.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::RwLock;
use tracing::{debug, info, warn};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::{Zeroize, Zeroizing};

use crate::error::VaultError;
use crate::policy::{SecretDef, SecretSource};
use crate::secret::{wipe_value, SecretFields};

mod settings;

pub use settings::{Settings, VaultAuth};

/// One call to Vault through a vaultrs client.
type VaultFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send + 'c>>;

/// A handle to Vault shared by all requests.
pub struct Vault {
    cfg: Settings,
    http: reqwest::Client,
    session: RwLock<Option<Arc<Session>>>,
    login_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    /// When a permission error last caused a login.
    last_login: Mutex<Option<Instant>>,
    preferred: AtomicUsize,
    /// One circuit breaker per address.
    breakers: Vec<Breaker>,
    /// Set once the tokens are revoked at shutdown: no login after that.
    closed: AtomicBool,
}

/// A circuit breaker for one address: after a failure the address is left
/// alone for a backoff that doubles up to [`BREAKER_MAX`], with jitter; then
/// one probe request may try it again. While every address is open,
/// requests fail fast with 503 and Vault sees no retry storm.
#[derive(Default)]
struct Breaker(Mutex<BreakerState>);

/// Where a breaker stands. `failures` counts the failures since the address
/// last answered; each one doubles the next backoff. Every failure opens the
/// breaker, so a closed one has none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum BreakerState {
    /// Requests go through.
    #[default]
    Closed,
    /// No request goes through before `until`; the first one after it is the
    /// probe.
    Open { failures: u32, until: Instant },
    /// The probe started at `since` and others wait for its outcome. A probe
    /// whose request was dropped unanswered (client gone, shutdown) expires
    /// after [`PROBE_TIMEOUT`] so the address is not left closed for good.
    Probing { failures: u32, since: Instant },
}

const BREAKER_BASE: Duration = Duration::from_millis(100);
const BREAKER_MAX: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// One login: a client per address, all carrying the same token. A
/// revocable session revokes its token when the last reference to it is
/// dropped.
struct Session {
    clients: Vec<VaultClient>,
    generation: u64,
    timing: Mutex<Timing>,
    /// Whether botward got the token by logging in, and so may revoke it.
    revocable: bool,
    /// Set once revocation was tried, so that it is tried only once.
    revoked: AtomicBool,
    /// Limit of one revocation call per address.
    timeout: Duration,
}

/// The login each lease was issued under, process-wide so that it outlives
/// a `Vault` a reload replaced. Vault revokes a token's leases with the
/// token, so a replaced token stays live while a lease issued under it is
/// held.
static ISSUED_UNDER: Mutex<BTreeMap<String, Arc<Session>>> = Mutex::new(BTreeMap::new());

/// When to renew the token and when it expires; `None` for tokens without a
/// TTL.
#[derive(Clone, Copy, Default)]
struct Timing {
    renew_at: Option<Instant>,
    expires_at: Option<Instant>,
}

/// A secret as read from Vault.
pub struct Fetched {
    pub data: SecretFields,
    /// The KV v2 version that was read.
    pub version: Option<u64>,
    pub lease: Option<LeaseInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: String,
    pub ttl_seconds: u64,
    pub renewable: bool,
}

/// Health of one Vault address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeHealth {
    pub address: String,
    pub reachable: bool,
    pub sealed: Option<bool>,
    pub standby: Option<bool>,
    /// Whether botward is currently leaving this address alone after
    /// failures.
    pub circuit_open: bool,
}

/// Idle Vault connections close after this long, which frees (and wipes)
/// their buffers, the last response they carried included. Under load they
/// stay open and are reused.
const VAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A login may be repeated after a permission error no more often than this,
/// so that a policy mistake cannot turn into a login storm.
const RELOGIN_MIN_INTERVAL: Duration = Duration::from_secs(2);

// === impl Vault ===

impl Vault {
    pub fn new(cfg: Settings) -> Result<Arc<Vault>, VaultError> {
        let http = http_client(&cfg)?;
        let cfg_len = cfg.addresses.len();
        Ok(Arc::new(Vault {
            cfg,
            http,
            session: RwLock::new(None),
            login_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            last_login: Mutex::new(None),
            preferred: AtomicUsize::new(0),
            breakers: (0..cfg_len).map(|_| Breaker::default()).collect(),
            closed: AtomicBool::new(false),
        }))
    }

    pub fn config(&self) -> &Settings {
        &self.cfg
    }

    /// Reads one secret: the latest version for KV v2, a fresh lease for a
    /// dynamic secret.
    pub async fn read(&self, def: &SecretDef) -> Result<Fetched, VaultError> {
        let path = backend_path(def);
        let (mut raw, session) = self
            .call_on(|c| Box::pin(read_raw(c, path.clone())))
            .await?;
        let lease_id = std::mem::take(&mut raw.lease_id);
        if !lease_id.is_empty() && session.revocable {
            issued_under().insert(lease_id.clone(), session);
        }
        let (lease_duration, renewable) = (raw.lease_duration, raw.renewable);
        let mut data = raw.data.take().ok_or(VaultError::BadResponse("no data"))?;
        let (fields, version) = match &def.source {
            SecretSource::Kv { .. } => {
                let version = data.pointer("/metadata/version").and_then(Value::as_u64);
                let inner = match data.get_mut("data") {
                    Some(d) => d.take(),
                    None => Value::Null,
                };
                wipe_value(&mut data);
                // A deleted or destroyed latest version reads as data: null.
                if inner.is_null() {
                    return Err(VaultError::Status {
                        code: 404,
                        errors: vec![],
                    });
                }
                (inner, version)
            }
            SecretSource::Dynamic { .. } => (data, None),
        };
        let fields = SecretFields::from_value(fields)
            .ok_or(VaultError::BadResponse("secret data is not an object"))?;
        let lease = (!lease_id.is_empty()).then_some(LeaseInfo {
            id: lease_id,
            ttl_seconds: lease_duration,
            renewable,
        });
        Ok(Fetched {
            data: fields,
            version,
            lease,
        })
    }

    /// Revokes a lease at once. The login it was issued under, if a newer
    /// one replaced it and this was its last lease, is revoked next.
    pub async fn revoke_lease(&self, lease_id: &str) -> Result<(), VaultError> {
        let body =
            serde_json::to_vec(&serde_json::json!({ "lease_id": lease_id })).unwrap_or_default();
        self.call(|c| {
            let ep = PathOp {
                method: RequestMethod::PUT,
                path: "sys/leases/revoke".to_owned(),
                body: Some(body.clone()),
            };
            Box::pin(vaultrs::api::exec_with_empty(c, ep))
        })
        .await?;
        issued_under().remove(lease_id);
        Ok(())
    }

    /// Renews a lease by `increment` seconds; Vault may grant less.
    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment: u64,
    ) -> Result<LeaseInfo, VaultError> {
        let body = serde_json::to_vec(
            &serde_json::json!({ "lease_id": lease_id, "increment": increment }),
        )
        .unwrap_or_default();
        let mut raw = self
            .call(|c| {
                let ep = PathOp {
                    method: RequestMethod::PUT,
                    path: "sys/leases/renew".to_owned(),
                    body: Some(body.clone()),
                };
                Box::pin(vaultrs::api::exec_with_no_result(c, ep))
            })
            .await?;
        Ok(LeaseInfo {
            id: std::mem::take(&mut raw.lease_id),
            ttl_seconds: raw.lease_duration,
            renewable: raw.renewable,
        })
    }

    /// Writes `data` as the new version of the KV v2 secret at
    /// `mount/data/path`: the elevation mailbox, never a bot's secret.
    pub async fn kv_put(&self, mount: &str, path: &str, data: &Value) -> Result<(), VaultError> {
        let body = serde_json::to_vec(&serde_json::json!({ "data": data })).unwrap_or_default();
        let path = format!("{mount}/data/{path}");
        self.call(|c| {
            let ep = PathOp {
                method: RequestMethod::POST,
                path: path.clone(),
                body: Some(body.clone()),
            };
            Box::pin(vaultrs::api::exec_with_no_result(c, ep))
        })
        .await
        .map(drop)
    }

    /// Has the PKI engine at `mount` sign `csr` (PEM) under `role`, asking
    /// for the common name, URI SAN and TTL botward sets. Whether the CSR's
    /// own names are copied too is the role's to say (`use_csr_sans`,
    /// `use_csr_common_name`); the caller checks what comes back. Returns
    /// the response's `data`: `certificate`, `ca_chain`, `serial_number`.
    pub async fn pki_sign(
        &self,
        mount: &str,
        role: &str,
        csr: &str,
        common_name: &str,
        uri_san: &str,
        ttl: std::time::Duration,
    ) -> Result<Value, VaultError> {
        let body = serde_json::json!({
            "csr": csr, "common_name": common_name, "uri_sans": uri_san,
            "ttl": format!("{}s", ttl.as_secs()), "format": "pem",
            "exclude_cn_from_sans": true,
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let path = format!("{mount}/sign/{role}");
        let mut raw = self
            .call(|c| {
                let ep = PathOp {
                    method: RequestMethod::POST,
                    path: path.clone(),
                    body: Some(body.clone()),
                };
                Box::pin(vaultrs::api::exec_with_no_result(c, ep))
            })
            .await?;
        raw.data.take().ok_or(VaultError::BadResponse(
            "the PKI engine returned no certificate",
        ))
    }

    /// The latest version of the KV v2 secret at `mount/data/path`, or
    /// `None` if there is none.
    pub async fn kv_get(&self, mount: &str, path: &str) -> Result<Option<Value>, VaultError> {
        let path = format!("{mount}/data/{path}");
        match self.path_op(RequestMethod::GET, path).await {
            Ok(mut raw) => Ok(raw
                .data
                .as_mut()
                .and_then(|d| d.get_mut("data"))
                .map(Value::take)
                .filter(|d| !d.is_null())),
            Err(VaultError::Status { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The keys under `mount/metadata/path`; none if there are none.
    pub async fn kv_list(&self, mount: &str, path: &str) -> Result<Vec<String>, VaultError> {
        let path = format!("{mount}/metadata/{path}");
        match self.path_op(RequestMethod::LIST, path).await {
            Ok(raw) => Ok(raw
                .data
                .as_ref()
                .and_then(|d| d.get("keys"))
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()),
            Err(VaultError::Status { code: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn path_op(
        &self,
        method: RequestMethod,
        path: String,
    ) -> Result<RawResponse, VaultError> {
        self.call(|c| {
            let ep = PathOp {
                method: method.clone(),
                path: path.clone(),
                body: None,
            };
            Box::pin(vaultrs::api::exec_with_no_result(c, ep))
        })
        .await
    }

    /// Health of each configured address, asked concurrently, without a
    /// token.
    pub async fn health(&self) -> Vec<NodeHealth> {
        let mut set = tokio::task::JoinSet::new();
        for (i, addr) in self.cfg.addresses.iter().enumerate() {
            let (http, addr, timeout) = (self.http.clone(), addr.clone(), self.cfg.timeout);
            let circuit_open = self.breakers[i].is_open();
            set.spawn(async move {
                let url = format!("{addr}/v1/sys/health?standbyok=true&perfstandbyok=true");
                let h = match tokio::time::timeout(timeout, http.get(&url).send()).await {
                    Ok(Ok(resp)) => {
                        let bytes = tokio::time::timeout(timeout, resp.bytes())
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_default();
                        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        NodeHealth {
                            address: addr,
                            reachable: true,
                            sealed: body.get("sealed").and_then(Value::as_bool),
                            standby: body.get("standby").and_then(Value::as_bool),
                            circuit_open,
                        }
                    }
                    _ => NodeHealth {
                        address: addr,
                        reachable: false,
                        sealed: None,
                        standby: None,
                        circuit_open,
                    },
                };
                (i, h)
            });
        }
        let mut out: Vec<(usize, NodeHealth)> = set.join_all().await;
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, h)| h).collect()
    }

    /// Whether a node is usable: reachable and unsealed.
    pub fn usable(nodes: &[NodeHealth]) -> bool {
        nodes.iter().any(|h| h.reachable && h.sealed != Some(true))
    }

    /// Revokes every token botward got by logging in, waiting for Vault's
    /// answers, and wipes them: the current one, and those kept for leases
    /// issued under them. No login follows. Used at shutdown, after the
    /// leases are revoked; a lease Vault could not revoke then goes with its
    /// token, and the next start finds it gone.
    pub async fn revoke_tokens(&self) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.login_lock.lock().await;
        let mut sessions: Vec<Arc<Session>> =
            self.session.write().await.take().into_iter().collect();
        let kept = std::mem::take(&mut *issued_under());
        for s in kept.into_values() {
            if !sessions.iter().any(|k| Arc::ptr_eq(k, &s)) {
                sessions.push(s);
            }
        }
        for s in sessions {
            if s.take_revocation() {
                s.revoke_now("shutdown").await;
            }
        }
    }

    /// Logs in now, so that configuration problems show at start.
    pub async fn ensure_login(&self) -> Result<(), VaultError> {
        self.session().await.map(|_| ())
    }

    /// Keeps the token alive: renews it before it expires and logs in again
    /// when renewal fails. Runs until the `Vault` is dropped.
    pub fn spawn_renewer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let sleep_for = {
                    let Some(v) = weak.upgrade() else { return };
                    let s = v.session.read().await.clone();
                    match s.map(|s| s.timing().renew_at) {
                        Some(Some(at)) => at
                            .saturating_duration_since(Instant::now())
                            .max(Duration::from_millis(500)),
                        // A token without a TTL never needs renewing.
                        Some(None) => Duration::from_secs(5),
                        // Not logged in yet: look again soon.
                        None => Duration::from_secs(1),
                    }
                };
                tokio::time::sleep(sleep_for).await;
                let Some(v) = weak.upgrade() else { return };
                let Some(s) = v.session.read().await.clone() else {
                    continue;
                };
                match s.timing().renew_at {
                    Some(at) if at <= Instant::now() => {}
                    _ => continue,
                }
                if let Err(error) = v.renew(&s).await {
                    warn!(%error, "Vault token renewal failed; logging in again");
                    if let Err(error) = v.relogin(s.generation, true).await {
                        warn!(%error, "Vault login failed; will retry");
                    }
                }
            }
        })
    }

    async fn renew(&self, s: &Session) -> Result<(), VaultError> {
        let mut auth = self
            .on_nodes(s, |c| Box::pin(vaultrs::token::renew_self(c, None)))
            .await?;
        let ttl = auth.lease_duration;
        let renewable = auth.renewable;
        auth.client_token.zeroize();
        auth.accessor.zeroize();
        // Renewal can shorten the TTL (max TTL reached): reschedule on the new one.
        *crate::lock(&s.timing) = timing(ttl, renewable);
        info!(ttl, "Renewed Vault token");
        Ok(())
    }

    /// Runs `op` against Vault with failover, logging in again once if the
    /// token was refused.
    async fn call<T, F>(&self, op: F) -> Result<T, VaultError>
    where
        F: for<'c> Fn(&'c VaultClient) -> VaultFuture<'c, T>,
    {
        self.call_on(op).await.map(|(t, _)| t)
    }

    /// [`Vault::call`], also returning the session that answered.
    async fn call_on<T, F>(&self, op: F) -> Result<(T, Arc<Session>), VaultError>
    where
        F: for<'c> Fn(&'c VaultClient) -> VaultFuture<'c, T>,
    {
        let session = self.session().await?;
        match self.on_nodes(&session, &op).await {
            Err(VaultError::Status { code: 403, .. }) => {
                info!("Vault refused botward's token; logging in again");
                self.relogin(session.generation, false).await?;
                drop(session);
                let session = self.session().await?;
                let t = self.on_nodes(&session, &op).await?;
                Ok((t, session))
            }
            other => other.map(|t| (t, session)),
        }
    }

    /// Tries each address, starting with the one that answered last, until
    /// one gives an answer that is not an availability failure.
    async fn on_nodes<T, F>(&self, session: &Session, op: F) -> Result<T, VaultError>
    where
        F: for<'c> Fn(&'c VaultClient) -> VaultFuture<'c, T>,
    {
        let n = session.clients.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = VaultError::Unavailable(
            "every Vault address is failing; retrying after a backoff".into(),
        );
        for i in 0..n {
            let idx = (first + i) % n;
            if !self.breakers[idx].allows(Instant::now()) {
                continue;
            }
            let outcome =
                match tokio::time::timeout(self.cfg.timeout, op(&session.clients[idx])).await {
                    Err(_) => Err(VaultError::Unavailable(format!(
                        "{} timed out",
                        self.cfg.addresses[idx]
                    ))),
                    Ok(r) => r.map_err(|e| classify(e, &self.cfg.addresses[idx])),
                };
            match outcome {
                Err(e @ VaultError::Unavailable(_)) => {
                    self.breakers[idx].failed(Instant::now());
                    debug!(error = %e, "Vault address unavailable");
                    last = e;
                }
                other => {
                    self.breakers[idx].succeeded();
                    if idx != first {
                        info!(address = %self.cfg.addresses[idx], "Vault failover");
                    }
                    self.preferred.store(idx, Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(last)
    }

    /// The current session, logging in if there is none or it has expired.
    async fn session(&self) -> Result<Arc<Session>, VaultError> {
        if let Some(s) = self.session.read().await.as_ref() {
            if s.timing().expires_at.is_none_or(|t| t > Instant::now()) {
                return Ok(s.clone());
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        self.relogin(generation, true).await?;
        self.session
            .read()
            .await
            .clone()
            .ok_or_else(|| VaultError::Login("no session".into()))
    }

    /// Logs in again unless another task already replaced session
    /// `generation`. Without `force`, logins closer together than
    /// [`RELOGIN_MIN_INTERVAL`] are refused.
    async fn relogin(&self, generation: u64, force: bool) -> Result<(), VaultError> {
        let _guard = self.login_lock.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(VaultError::Unavailable("botward is shutting down".into()));
        }
        let current = self.generation.load(Ordering::Acquire);
        let have_session = self.session.read().await.is_some();
        if current != generation && have_session {
            return Ok(());
        }
        if !force {
            let mut last = crate::lock(&self.last_login);
            if last.is_some_and(|t| t.elapsed() < RELOGIN_MIN_INTERVAL) {
                return Err(VaultError::Status {
                    code: 403,
                    errors: vec!["permission denied".into()],
                });
            }
            *last = Some(Instant::now());
        }
        let next = current + 1;
        let session = self.login(next).await?;
        let old = self.session.write().await.replace(Arc::new(session));
        self.generation.store(next, Ordering::Release);
        info!(generation = next, "Logged in to Vault");
        // Revoked once the requests and leases still using it are done.
        drop(old);
        Ok(())
    }

    async fn login(&self, generation: u64) -> Result<Session, VaultError> {
        let mut clients = self.clients()?;
        let revocable = !matches!(self.cfg.auth, VaultAuth::Token { .. });
        let token = match &self.cfg.auth {
            VaultAuth::Token { token_file } => read_credential(token_file)?,
            VaultAuth::AppRole {
                mount,
                role_id_file,
                secret_id_file,
            } => {
                let role_id = read_credential(role_id_file)?;
                let secret_id = read_credential(secret_id_file)?;
                let unauth = Session::new(self.clients()?, generation, self.cfg.timeout);
                let mut auth = self
                    .on_nodes(&unauth, |c| {
                        let (m, r, s) = (mount.clone(), role_id.clone(), secret_id.clone());
                        Box::pin(async move { vaultrs::auth::approle::login(c, &m, &r, &s).await })
                    })
                    .await
                    .map_err(login_error)?;
                auth.accessor.zeroize();
                Zeroizing::new(std::mem::take(&mut auth.client_token))
            }
            VaultAuth::Cert { mount, name, .. } => {
                // The certificate itself is presented by the HTTP client.
                let unauth = Session::new(self.clients()?, generation, self.cfg.timeout);
                let mut auth = self
                    .on_nodes(&unauth, |c| {
                        let (m, n) = (mount.clone(), name.clone());
                        Box::pin(async move { vaultrs::auth::cert::login(c, &m, &n).await })
                    })
                    .await
                    .map_err(login_error)?;
                auth.accessor.zeroize();
                Zeroizing::new(std::mem::take(&mut auth.client_token))
            }
        };
        for c in &mut clients {
            use vaultrs::client::Client;
            c.set_token(token.as_str());
        }
        drop(token);
        let mut session = Session::new(clients, generation, self.cfg.timeout);
        // From here on a failure revokes the fresh token as it is dropped.
        session.revocable = revocable;
        let mut info = self
            .on_nodes(&session, |c| Box::pin(vaultrs::token::lookup_self(c)))
            .await
            .map_err(login_error)?;
        info.id.zeroize();
        info.accessor.zeroize();
        let renewable = info.renewable.unwrap_or(false);
        *crate::lock(&session.timing) = timing(info.ttl, renewable);
        Ok(session)
    }

    /// A client per address with an empty token. All share one HTTP client
    /// so connections stay alive across logins.
    fn clients(&self) -> Result<Vec<VaultClient>, VaultError> {
        self.cfg
            .addresses
            .iter()
            .map(|addr| {
                let settings = VaultClientSettingsBuilder::default()
                    .address(addr)
                    .token("")
                    .ca_certs(Vec::new())
                    .identity(None)
                    .timeout(Some(self.cfg.timeout))
                    .verify(true)
                    .namespace(None)
                    .build()
                    .map_err(|_| VaultError::Login(format!("bad Vault address {addr}")))?;
                let mut client = VaultClient::new(settings)
                    .map_err(|_| VaultError::Login("cannot build Vault client".into()))?;
                client.http = rustify::clients::reqwest::Client::new(addr, self.http.clone());
                Ok(client)
            })
            .collect()
    }
}

// === impl Breaker ===

impl Breaker {
    /// Whether a request may go to this address now. After the backoff one
    /// probe goes through; others wait for its outcome.
    fn allows(&self, now: Instant) -> bool {
        let mut state = crate::lock(&self.0);
        match *state {
            BreakerState::Closed => true,
            BreakerState::Open { until, .. } if now < until => false,
            BreakerState::Probing { since, .. } if now.duration_since(since) < PROBE_TIMEOUT => {
                false
            }
            BreakerState::Open { failures, .. } | BreakerState::Probing { failures, .. } => {
                *state = BreakerState::Probing {
                    failures,
                    since: now,
                };
                true
            }
        }
    }

    /// Records a failure at `now` and opens the breaker for the backoff,
    /// ±25 % of random jitter so that many sidecars do not retry in step.
    fn failed(&self, now: Instant) {
        let mut r = [0u8; 2];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r);
        let jitter = 0.75 + f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX) * 0.5;
        self.failed_with_jitter(now, jitter);
    }

    /// [`Breaker::failed`] with the backoff multiplied by `jitter`.
    fn failed_with_jitter(&self, now: Instant, jitter: f64) {
        let mut state = crate::lock(&self.0);
        let failures = match *state {
            BreakerState::Closed => 0,
            BreakerState::Open { failures, .. } | BreakerState::Probing { failures, .. } => {
                failures
            }
        }
        .saturating_add(1);
        let backoff = BREAKER_BASE
            .saturating_mul(1 << failures.min(16).saturating_sub(1))
            .min(BREAKER_MAX);
        *state = BreakerState::Open {
            failures,
            until: now + backoff.mul_f64(jitter),
        };
    }

    /// Records an answer: the address is usable again.
    fn succeeded(&self) {
        *crate::lock(&self.0) = BreakerState::Closed;
    }

    fn is_open(&self) -> bool {
        self.is_open_at(Instant::now())
    }

    /// Whether requests are held back at `now`: open and still in its
    /// backoff. A breaker whose backoff is over, or whose probe is out, is
    /// not open.
    fn is_open_at(&self, now: Instant) -> bool {
        matches!(*crate::lock(&self.0), BreakerState::Open { until, .. } if now < until)
    }
}

#[cfg(test)]
mod breaker_tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn state(b: &Breaker) -> BreakerState {
        *crate::lock(&b.0)
    }

    #[test]
    fn a_closed_breaker_lets_every_request_through() {
        let b = Breaker::default();
        let t0 = Instant::now();
        assert!(b.allows(t0));
        assert!(b.allows(t0));
        assert!(!b.is_open_at(t0));
        b.succeeded();
        assert_eq!(state(&b), BreakerState::Closed);
    }

    #[test]
    fn one_failure_opens_it_for_the_base_backoff() {
        let b = Breaker::default();
        let t0 = Instant::now();
        b.failed_with_jitter(t0, 1.0);
        assert_eq!(
            state(&b),
            BreakerState::Open {
                failures: 1,
                until: t0 + BREAKER_BASE
            }
        );
        assert!(b.is_open_at(t0));
        assert!(!b.allows(t0 + 99 * MS));
        assert!(b.is_open_at(t0 + 99 * MS));
        assert!(!b.is_open_at(t0 + 100 * MS));
    }

    #[test]
    fn after_the_backoff_one_probe_goes_and_its_answer_closes_the_breaker() {
        let b = Breaker::default();
        let t0 = Instant::now();
        b.failed_with_jitter(t0, 1.0);
        let t1 = t0 + 100 * MS;
        assert!(b.allows(t1));
        assert_eq!(
            state(&b),
            BreakerState::Probing {
                failures: 1,
                since: t1
            }
        );
        assert!(!b.is_open_at(t1));
        assert!(!b.allows(t1));
        assert!(!b.allows(t1 + PROBE_TIMEOUT - MS));
        b.succeeded();
        assert_eq!(state(&b), BreakerState::Closed);
        assert!(b.allows(t1 + MS));
        assert!(b.allows(t1 + MS));
    }

    #[test]
    fn a_failed_probe_doubles_the_backoff_up_to_the_cap() {
        let b = Breaker::default();
        let mut now = Instant::now();
        let mut want = BREAKER_BASE;
        for failures in 1..=20u32 {
            if failures > 1 {
                assert!(b.allows(now), "probe {failures}");
            }
            b.failed_with_jitter(now, 1.0);
            assert_eq!(
                state(&b),
                BreakerState::Open {
                    failures,
                    until: now + want
                }
            );
            assert!(!b.allows(now + want - MS));
            now += want;
            want = (want * 2).min(BREAKER_MAX);
        }
        assert_eq!(want, BREAKER_MAX);
    }

    #[test]
    fn an_unanswered_probe_expires() {
        let b = Breaker::default();
        let t0 = Instant::now();
        b.failed_with_jitter(t0, 1.0);
        let t1 = t0 + 100 * MS;
        assert!(b.allows(t1));
        assert!(!b.allows(t1 + PROBE_TIMEOUT - MS));
        let t2 = t1 + PROBE_TIMEOUT;
        assert!(b.allows(t2));
        assert_eq!(
            state(&b),
            BreakerState::Probing {
                failures: 1,
                since: t2
            }
        );
        assert!(!b.allows(t2 + MS));
    }

    #[test]
    fn an_answer_to_an_earlier_request_closes_an_open_breaker() {
        let b = Breaker::default();
        let t0 = Instant::now();
        b.failed_with_jitter(t0, 1.0);
        b.failed_with_jitter(t0, 1.0);
        assert!(!b.allows(t0 + MS));
        b.succeeded();
        assert!(b.allows(t0 + MS));
        b.failed_with_jitter(t0 + MS, 1.0);
        assert_eq!(
            state(&b),
            BreakerState::Open {
                failures: 1,
                until: t0 + MS + BREAKER_BASE
            }
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter_of_the_backoff() {
        let t0 = Instant::now();
        for _ in 0..50 {
            let b = Breaker::default();
            b.failed(t0);
            let BreakerState::Open { failures, until } = state(&b) else {
                panic!("{:?}", state(&b));
            };
            assert_eq!(failures, 1);
            assert!(until >= t0 + 75 * MS && until <= t0 + 125 * MS);
        }
    }
}

// === impl Session ===

impl Session {
    fn new(clients: Vec<VaultClient>, generation: u64, timeout: Duration) -> Session {
        Session {
            clients,
            generation,
            timing: Mutex::default(),
            revocable: false,
            revoked: AtomicBool::new(false),
            timeout,
        }
    }

    fn timing(&self) -> Timing {
        *crate::lock(&self.timing)
    }

    /// Whether revoking the token is worth a call: botward got it by
    /// logging in, it has not expired, and no revocation was tried yet.
    fn take_revocation(&self) -> bool {
        self.revocable
            && self.timing().expires_at.is_none_or(|t| t > Instant::now())
            && !self.revoked.swap(true, Ordering::AcqRel)
    }

    /// Revokes the token with `auth/token/revoke-self`, trying each address
    /// in turn until one answers, and logs the outcome (never the token).
    async fn revoke_now(&self, why: &'static str) {
        let mut outcome = Err(VaultError::Unavailable("no Vault address".into()));
        for c in &self.clients {
            let address = c.settings.address.as_str().trim_end_matches('/').to_owned();
            outcome = match tokio::time::timeout(self.timeout, vaultrs::token::revoke_self(c)).await
            {
                Err(_) => Err(VaultError::Unavailable(format!("{address} timed out"))),
                Ok(r) => r.map_err(|e| classify(e, &address)),
            };
            if !matches!(outcome, Err(VaultError::Unavailable(_))) {
                break;
            }
        }
        let generation = self.generation;
        match outcome {
            Ok(()) => info!(
                generation,
                why, "Revoked a Vault token botward no longer needs"
            ),
            Err(VaultError::Status { code: 403, .. }) => {
                info!(
                    generation,
                    why, "A Vault token botward no longer needs was already invalid"
                )
            }
            Err(error) => {
                warn!(%error, generation, why, "Cannot revoke a Vault token botward no longer needs; it lapses at its TTL")
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The last reference is gone: revoke the token in the background,
        // without holding up whoever dropped it. The task's copy is not
        // revocable itself, so it only wipes the token when it is done.
        if self.take_revocation() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let rest = Session::new(
                    std::mem::take(&mut self.clients),
                    self.generation,
                    self.timeout,
                );
                rt.spawn(async move {
                    rest.revoke_now("replaced").await;
                });
            }
        }
        for c in &mut self.clients {
            c.settings.token.zeroize();
            c.middle.token.zeroize();
        }
    }
}

fn issued_under() -> std::sync::MutexGuard<'static, BTreeMap<String, Arc<Session>>> {
    crate::lock(&ISSUED_UNDER)
}

/// When to renew and when the token expires, from its TTL in seconds. A TTL
/// of 0 never expires.
fn timing(ttl: u64, renewable: bool) -> Timing {
    if ttl == 0 {
        return Timing::default();
    }
    let now = Instant::now();
    let expires = now + Duration::from_secs(ttl);
    let renew = renewable.then(|| now + Duration::from_secs(ttl).mul_f64(2.0 / 3.0));
    // A token that cannot be renewed is replaced by a fresh login shortly
    // before it expires.
    let renew = renew.or_else(|| Some(now + Duration::from_secs(ttl).mul_f64(0.9)));
    Timing {
        renew_at: renew,
        expires_at: Some(expires),
    }
}

fn read_credential(path: &std::path::Path) -> Result<Zeroizing<String>, VaultError> {
    let mut raw =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            VaultError::Login(format!("cannot read {}: {}", path.display(), e.kind()))
        })?);
    let trimmed = Zeroizing::new(raw.trim().to_owned());
    raw.zeroize();
    if trimmed.is_empty() {
        return Err(VaultError::Login(format!("{} is empty", path.display())));
    }
    Ok(trimmed)
}

fn login_error(e: VaultError) -> VaultError {
    match e {
        VaultError::Unavailable(_) => e,
        other => VaultError::Login(other.to_string()),
    }
}

/// Reduces a vaultrs error to what may be shown: never a response body.
fn classify(e: ClientError, address: &str) -> VaultError {
    use rustify::errors::ClientError as Rest;
    match e {
        // Sealed, standby or overloaded nodes: try the next address.
        ClientError::APIError {
            code: 429 | 501 | 503,
            ..
        } => VaultError::Unavailable(format!("{address} is sealed or in standby")),
        ClientError::APIError { code, errors } => {
            debug!(code, errors = ?errors, address, "Vault answered with an error");
            let errors = errors.into_iter().map(|mut e| {
                e.truncate(200);
                e
            });
            VaultError::Status {
                code,
                errors: errors.collect(),
            }
        }
        ClientError::RestClientError { source } => match source {
            Rest::RequestError { .. } | Rest::ResponseError { .. } => {
                VaultError::Unavailable(format!("cannot reach {address}"))
            }
            Rest::ServerResponseError {
                code: 429 | 501 | 503,
                ..
            } => VaultError::Unavailable(format!("{address} is sealed or in standby")),
            Rest::ServerResponseError { code, mut content } => {
                if let Some(c) = content.as_mut() {
                    c.zeroize();
                }
                VaultError::Status {
                    code,
                    errors: vec![],
                }
            }
            Rest::ResponseParseError { mut content, .. } => {
                if let Some(c) = content.as_mut() {
                    c.zeroize();
                }
                VaultError::BadResponse("unparseable response")
            }
            Rest::ResponseConversionError { mut content, .. } => {
                content.zeroize();
                VaultError::BadResponse("response is not UTF-8")
            }
            _ => VaultError::BadResponse("request failed"),
        },
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            VaultError::BadResponse("empty response")
        }
        _ => VaultError::BadResponse("client error"),
    }
}

fn http_client(cfg: &Settings) -> Result<reqwest::Client, VaultError> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .pool_idle_timeout(VAULT_IDLE_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(ca) = &cfg.ca {
        // Trust only the configured CA for Vault, not the platform roots.
        let client_cert = match &cfg.auth {
            VaultAuth::Cert {
                cert_file,
                key_file,
                ..
            } => Some((cert_file.as_path(), key_file.as_path())),
            _ => None,
        };
        let tls = crate::tls::pinned_client_config(ca, client_cert)
            .map_err(|e| VaultError::Login(e.to_string()))?;
        b = b.tls_backend_preconfigured(tls);
    }
    b.build()
        .map_err(|_| VaultError::Login("cannot build HTTP client".into()))
}

/// The Vault API path a secret is read from.
pub fn backend_path(def: &SecretDef) -> String {
    match &def.source {
        SecretSource::Kv { mount, path } => format!("{mount}/data/{path}"),
        SecretSource::Dynamic { path } => path.clone(),
    }
}

/// A GET of any path that keeps the whole response envelope, lease included.
struct ReadRaw {
    path: String,
}

#[derive(Deserialize)]
struct RawResponse {
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
    data: Option<Value>,
}

impl Drop for RawResponse {
    fn drop(&mut self) {
        if let Some(d) = self.data.as_mut() {
            wipe_value(d);
        }
    }
}

impl Endpoint for ReadRaw {
    type Response = RawResponse;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }
}

/// Any method on any path, with an optional JSON body.
struct PathOp {
    method: RequestMethod,
    path: String,
    body: Option<Vec<u8>>,
}

impl Endpoint for PathOp {
    type Response = RawResponse;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(self.body.clone())
    }
}

async fn read_raw(client: &VaultClient, path: String) -> Result<RawResponse, ClientError> {
    vaultrs::api::exec_with_no_result(client, ReadRaw { path }).await
}
