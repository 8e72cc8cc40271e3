//! Bot lifecycle on the broker: each state change (disabled, past its end
//! date, dormant, overdue for review, back to active) is recorded once, and
//! a bot that is off loses its leases and its elevation windows at once. The
//! decision itself is [`crate::policy::decide`]'s, on every request.

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::json;
use tracing::{info, warn};

use super::Shared;
use crate::audit::{Decision, Record};
use crate::lock;
use crate::policy::{BotDef, State};

impl Shared {
    /// Compares every bot's lifecycle state at `now` with the one last
    /// seen, records each change, and revokes the leases and closes the
    /// elevations of every bot that is off. Runs at start, after each
    /// reload and every few seconds, so a date that passes takes effect
    /// without a reload, and a lease that was being issued as its bot went
    /// off is caught on the next pass.
    pub async fn sweep_lifecycle(&self, now: Timestamp) {
        let rt = self.runtime();
        let ticket = rt.config.change_ticket.as_deref();
        let back = self.activity.align(rt.config.bots.values(), ticket, now);
        let changes: Vec<(&BotDef, State, State)> = {
            let mut last = lock(&self.lifecycle);
            last.retain(|bot, _| rt.config.bots.contains_key(bot));
            // A bot a ticket brought back was dormant, whatever was last
            // recorded (a restart forgets): its return is recorded.
            for r in back.iter().filter(|r| r.was_dormant) {
                last.insert(r.bot.clone(), State::Dormant);
            }
            rt.config
                .bots
                .values()
                .filter_map(|bot| {
                    let state = self.state_of(bot, now);
                    let was = last
                        .insert(bot.name.clone(), state)
                        .unwrap_or(State::Active);
                    (state != was).then_some((bot, was, state))
                })
                .collect()
        };
        for (bot, was, state) in changes {
            self.record_lifecycle(bot, was, state).await;
        }
        let off: HashMap<&str, &'static str> = rt
            .config
            .bots
            .values()
            .filter_map(|b| match self.state_of(b, now) {
                State::Disabled => Some((b.name.as_str(), "bot_disabled")),
                State::Expired => Some((b.name.as_str(), "bot_expired")),
                State::Dormant if b.lifecycle.is_off(State::Dormant) => {
                    Some((b.name.as_str(), "bot_dormant"))
                }
                State::Dormant | State::Active | State::ReviewOverdue => None,
            })
            .collect();
        if let Err(e) = self.activity.save() {
            warn!(error = %e, "Cannot save bot activity; the next sweep tries again");
        }
        if off.is_empty() {
            return;
        }
        let (closed, cancelled) = self
            .elevations
            .close_where("bot_disabled", now, |r, _| off.contains_key(r.bot.as_str()));
        self.close_windows(closed).await;
        self.cancel_requests(cancelled, "bot_disabled").await;
        for held in self.leases.all() {
            if let Some(reason) = off.get(held.bot.as_str()) {
                self.revoke_held(&held, reason).await;
            }
        }
    }

    /// `bot`'s state at `now`, its activity included.
    fn state_of(&self, bot: &BotDef, now: Timestamp) -> State {
        bot.lifecycle
            .state_at(now, self.activity.quiet_since(&bot.name))
    }

    async fn record_lifecycle(&self, bot: &BotDef, was: State, state: State) {
        let kind = match state {
            State::Disabled => "bot.disabled",
            State::Expired => "bot.expired",
            State::Dormant => "bot.dormant",
            State::ReviewOverdue => "bot.review_overdue",
            State::Active => "bot.reactivated",
        };
        if state == State::Active {
            info!(bot = %bot.name, was = was.as_str(), "Bot active again");
        } else {
            warn!(bot = %bot.name, state = state.as_str(), "Bot lifecycle state changed");
        }
        let mut rec = Record::new(kind, crate::audit::request_id(), self.audit.host());
        rec.decision = if bot.lifecycle.is_off(state) {
            Decision::Deny
        } else {
            Decision::Allow
        };
        rec.bot = Some(bot.name.clone());
        let date = |d: Option<jiff::civil::Date>| d.map(|d| d.to_string());
        rec.detail = Some(json!({"lifecycle": {
            "state": state.as_str(), "was": was.as_str(),
            "review_by": date(bot.lifecycle.review_by), "expires": date(bot.lifecycle.expires),
            "quiet_since": self.activity.quiet_since(&bot.name).map(|t| t.to_string()),
            "dormant_after_s": bot.lifecycle.dormant_after.map(|d| d.as_secs()),
            "change_ticket": self.runtime().config.change_ticket,
        }}));
        if self.audit.write(rec).await.is_err() {
            warn!(kind, "Cannot write audit record");
        }
    }
}
