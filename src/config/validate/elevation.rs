//! The `[elevation]` table, the `[[approver]]`s and each secret's
//! `approvals`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::model::ElevationSettings;
use crate::config::raw::{RawApprover, RawElevation, RawSecret};
use crate::policy::{is_person_name, ApproverDef, BotDef, SecretDef};

/// The most approvals a secret may ask for.
const MAX_APPROVALS: u64 = 10;
/// The longest `max_window` accepted.
const MAX_WINDOW_LIMIT: Duration = Duration::from_secs(7 * 86_400);
/// Longest approver name.
const MAX_APPROVER_NAME: usize = 128;

impl Validator<'_> {
    /// A secret's `approvals`: 1 unless set, and only on a privileged
    /// secret.
    pub(super) fn approvals(&mut self, name: &str, s: &RawSecret) -> usize {
        if let (false, Some(a)) = (s.privileged, &s.approvals) {
            self.problem(
                a,
                format!("secret {name:?}: approvals applies only to privileged secrets"),
            );
        }
        self.in_range(
            s.approvals.as_ref(),
            1..=MAX_APPROVALS,
            1,
            format!("secret {name:?}: approvals must be between 1 and {MAX_APPROVALS}"),
        ) as usize
    }

    pub(super) fn approvers(&mut self, raw: &[RawApprover]) -> BTreeMap<String, ApproverDef> {
        let mut out: BTreeMap<String, ApproverDef> = BTreeMap::new();
        for a in raw {
            let Some(def) = self.approver(a) else {
                continue;
            };
            if out.keys().any(|n| n.eq_ignore_ascii_case(&def.name)) {
                self.problem(&a.name, format!("approver {:?} is defined twice", def.name));
                continue;
            }
            // One key is one person: it may not count as two approvers.
            if let Some(other) = out.values().find(|o| o.cert_der == def.cert_der) {
                self.problem(
                    &a.cert,
                    format!(
                        "approver {:?} has the same certificate as {:?}",
                        def.name, other.name
                    ),
                );
                continue;
            }
            out.insert(def.name.clone(), def);
        }
        out
    }

    fn approver(&mut self, a: &RawApprover) -> Option<ApproverDef> {
        let name = a.name.get_ref().clone();
        let name_ok = !name.is_empty()
            && name.len() <= MAX_APPROVER_NAME
            && name.bytes().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b'_' | b'-' | b'+')
            });
        if !name_ok {
            self.problem(&a.name, format!("approver name {name:?} must be 1-{MAX_APPROVER_NAME} letters, digits, '@', '.', '_', '-' or '+', as in a bot's owner"));
            return None;
        }
        let teams: BTreeSet<String> = a
            .teams
            .get_ref()
            .iter()
            .map(|t| t.trim().to_owned())
            .collect();
        if teams.is_empty() || teams.iter().any(String::is_empty) {
            self.problem(
                &a.teams,
                format!("approver {name:?}: teams must list the teams whose bots they approve, or \"*\""),
            );
        }
        let cert = self.existing_file(&format!("approver {name:?}: cert"), &a.cert);
        let cert_der = self.approver_cert(&name, &a.cert, &cert)?;
        Some(ApproverDef {
            name,
            cert,
            cert_der,
            teams,
        })
    }

    /// The one certificate in an approver's PEM file, with a key approvals
    /// can be verified under.
    fn approver_cert(
        &mut self,
        name: &str,
        at: &Spanned<String>,
        path: &std::path::Path,
    ) -> Option<Vec<u8>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let certs: Vec<CertificateDer<'static>> = match CertificateDer::pem_file_iter(path) {
            Ok(it) => match it.collect::<Result<_, _>>() {
                Ok(c) => c,
                Err(e) => {
                    self.problem(
                        at,
                        format!("approver {name:?}: cert: {}: {e}", path.display()),
                    );
                    return None;
                }
            },
            // existing_file reported it.
            Err(_) => return None,
        };
        let [cert] = certs.as_slice() else {
            self.problem(
                at,
                format!(
                    "approver {name:?}: cert: {} must hold exactly one certificate",
                    path.display()
                ),
            );
            return None;
        };
        if let Err(e) = crate::elevation::statement::supported_key(cert) {
            self.problem(
                at,
                format!("approver {name:?}: cert: {}: {e}", path.display()),
            );
            return None;
        }
        Some(cert.to_vec())
    }

    /// The `[elevation]` table, which privileged secrets require.
    pub(super) fn elevation(
        &mut self,
        raw: Option<&Spanned<RawElevation>>,
        secrets: &BTreeMap<String, SecretDef>,
        bots: &BTreeMap<String, BotDef>,
        approvers: &BTreeMap<String, ApproverDef>,
    ) -> Option<ElevationSettings> {
        self.eligible_approvers(secrets, bots, approvers);
        let privileged: Vec<&SecretDef> = secrets.values().filter(|s| s.privileged).collect();
        let Some(raw) = raw else {
            if let Some(s) = privileged.first() {
                self.unplaced(format!("secret {:?} is privileged: an [elevation] table and at least one [[approver]] are needed, since privileged secrets have no standing access", s.name));
            }
            if !approvers.is_empty() {
                self.unplaced("[[approver]] entries need an [elevation] table");
            }
            return None;
        };
        for s in &privileged {
            if s.approvals > approvers.len() {
                self.problem(
                    raw,
                    format!(
                        "secret {:?} needs {} approvals but only {} approvers are configured",
                        s.name,
                        s.approvals,
                        approvers.len()
                    ),
                );
            }
        }
        let e = raw.get_ref();
        let max_window = self.duration(&e.max_window, "elevation.max_window");
        if let Some(m) = max_window.filter(|m| m.is_zero() || *m > MAX_WINDOW_LIMIT) {
            self.problem(
                &e.max_window,
                format!(
                    "elevation.max_window must be above 0 and at most 7d, not {}s",
                    m.as_secs()
                ),
            );
        }
        let poll_interval = e
            .poll_interval
            .as_ref()
            .and_then(|p| self.duration(p, "elevation.poll_interval"))
            .unwrap_or(Duration::from_secs(2));
        if let Some(p) = e.poll_interval.as_ref().filter(|_| {
            poll_interval < Duration::from_secs(1) || poll_interval > Duration::from_secs(300)
        }) {
            self.problem(p, "elevation.poll_interval must be between 1s and 5m");
        }
        let request_ttl = e
            .request_ttl
            .as_ref()
            .and_then(|p| self.duration(p, "elevation.request_ttl"))
            .unwrap_or(Duration::from_secs(86_400));
        if let Some(t) = e
            .request_ttl
            .as_ref()
            .filter(|_| request_ttl < Duration::from_secs(60) || request_ttl > MAX_WINDOW_LIMIT)
        {
            self.problem(t, "elevation.request_ttl must be between 1m and 7d");
        }
        let webhook = e.webhook.as_ref().map(|w| {
            if !(w.get_ref().starts_with("http://") || w.get_ref().starts_with("https://")) {
                self.problem(w, "elevation.webhook must be an http(s) URL");
            }
            w.get_ref().clone()
        });
        let mailbox = e.mailbox.get_ref();
        let mount = self.mailbox_path("elevation.mailbox.mount", &mailbox.mount);
        let prefix = self.mailbox_path("elevation.mailbox.prefix", &mailbox.prefix);
        Some(ElevationSettings {
            max_window: max_window.unwrap_or(Duration::from_secs(3600)),
            mount,
            prefix,
            webhook,
            poll_interval,
            request_ttl,
        })
    }

    /// Every bot granted a privileged secret has an owner in the form of
    /// an approver's name, so that self-approval can be told, and enough
    /// approvers who cover its team and are not its owner.
    fn eligible_approvers(
        &mut self,
        secrets: &BTreeMap<String, SecretDef>,
        bots: &BTreeMap<String, BotDef>,
        approvers: &BTreeMap<String, ApproverDef>,
    ) {
        for bot in bots.values() {
            let needed = bot
                .secrets
                .iter()
                .filter_map(|s| secrets.get(s))
                .filter(|s| s.privileged)
                .map(|s| (s.name.as_str(), s.approvals))
                .max_by_key(|(_, n)| *n);
            let Some((secret, needed)) = needed else {
                continue;
            };
            if !is_person_name(bot.owner.trim()) {
                self.unplaced(format!("bot {:?} is granted privileged secret {secret:?}: its owner {:?} must be written like an approver's name (e.g. alice@corp.example), so that self-approval can be told", bot.name, bot.owner));
            }
            let eligible = approvers
                .values()
                .filter(|a| a.covers(&bot.team) && !a.owns(&bot.owner))
                .count();
            if eligible < needed {
                self.unplaced(format!("bot {:?}: privileged secret {secret:?} needs {needed} approvals, but only {eligible} approvers cover team {:?} and are not the bot's owner", bot.name, bot.team));
            }
        }
    }

    /// A clean Vault path without surrounding slashes.
    fn mailbox_path(&mut self, key: &str, raw: &Spanned<String>) -> String {
        let p = raw.get_ref().trim_matches('/').to_owned();
        let clean = !p.is_empty()
            && p.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
            });
        if !clean {
            self.problem(
                raw,
                format!("{key}: {:?} is not a clean Vault path", raw.get_ref()),
            );
        }
        p
    }
}
