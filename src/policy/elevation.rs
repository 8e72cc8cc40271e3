//! Elevation: a privileged secret has no standing access. A bot granted it
//! may read it only inside a window that enough approvers signed, and the
//! approvers who may sign for it are defined here.

use std::collections::BTreeSet;
use std::path::PathBuf;

use jiff::Timestamp;

/// An open (or approved, not yet started) elevation window: one bot, one
/// secret, a time span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The elevation request's ID.
    pub id: String,
    pub bot: String,
    pub secret: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// The distinct approvers whose signatures opened it.
    pub approvers: Vec<String>,
}

impl Window {
    /// Whether the window lets `bot` read `secret` at `now`.
    pub fn admits(&self, bot: &str, secret: &str, now: Timestamp) -> bool {
        self.bot == bot && self.secret == secret && self.not_before <= now && now < self.not_after
    }
}

/// A person who may approve elevations, with the certificate their
/// decisions are signed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApproverDef {
    /// In the same form as a bot's `owner`, so self-approval can be told.
    pub name: String,
    pub cert: PathBuf,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Teams whose bots this approver may approve; `*` for all.
    pub teams: BTreeSet<String>,
}

impl ApproverDef {
    /// Whether this approver may decide for a bot of `team`.
    pub fn covers(&self, team: &str) -> bool {
        self.teams.contains("*") || self.teams.contains(team)
    }

    /// Whether this approver is the bot's owner: nobody approves their own
    /// bot.
    pub fn owns(&self, owner: &str) -> bool {
        self.name.eq_ignore_ascii_case(owner.trim())
    }
}
