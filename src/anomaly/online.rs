//! Online scoring in `serve`: every request of a registered bot goes through
//! its model, the verdict is written into the request's audit record, and
//! the bot's policy decides what happens above its threshold.
//!
//! Models persist to a state file (mode 0600) every minute and at shutdown,
//! so baselines survive restarts. Their size is fixed per bot.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use jiff::tz::TimeZone;
use tracing::warn;

use super::model::{BotModel, Event, Verdict};
use crate::config::AnomalySettings;

pub struct Scorer {
    models: Mutex<HashMap<String, BotModel>>,
    state: PathBuf,
    train: jiff::SignedDuration,
    webhook: Option<String>,
    http: reqwest::Client,
}

impl Scorer {
    /// Loads the saved baselines; a missing or unreadable state starts
    /// fresh, with a warning for the latter.
    pub fn open(settings: &AnomalySettings) -> Scorer {
        let models = match std::fs::read(&settings.state) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(error = %e, file = %settings.state.display(), "Anomaly baselines are unreadable; learning anew");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        let train = jiff::SignedDuration::try_from(settings.train)
            .unwrap_or(jiff::SignedDuration::from_hours(24 * 28));
        Scorer {
            models: Mutex::new(models),
            state: settings.state.clone(),
            train,
            webhook: settings.webhook.clone(),
            http,
        }
    }

    /// Scores one request of `bot` and learns from it. `learn_flagged` is
    /// false for bots whose anomalies are denied, so that a refused request
    /// does not become normal by being retried.
    pub fn score(&self, bot: &str, tz: &TimeZone, ev: &Event<'_>, learn_flagged: bool) -> Verdict {
        let mut models = crate::lock(&self.models);
        let train = self.train;
        let model = models
            .entry(bot.to_owned())
            .or_insert_with(|| BotModel::new(bot, ev.ts, train));
        let mut findings = Vec::new();
        model.observe(ev, tz, &mut findings, learn_flagged)
    }

    /// Writes the baselines to the state file, atomically.
    pub fn save(&self) -> std::io::Result<()> {
        let bytes = {
            let models = crate::lock(&self.models);
            serde_json::to_vec(&*models).map_err(std::io::Error::other)?
        };
        crate::state_file::replace(&self.state, &bytes, 0o600)
    }

    /// Posts an alert to the webhook, if one is configured, without waiting.
    pub fn alert(&self, payload: serde_json::Value) {
        let Some(url) = self.webhook.clone() else {
            return;
        };
        let http = self.http.clone();
        tokio::spawn(async move {
            let body = serde_json::to_vec(&payload).unwrap_or_default();
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            if let Err(e) = sent {
                // The URL may carry a token: leave it out.
                warn!(error = %e.without_url(), "Anomaly alert webhook failed");
            }
        });
    }
}
