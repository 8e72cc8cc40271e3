//! Whether an elevation still stands under a config: what the request
//! path checks on every privileged read and a reload checks for every open
//! window.

use crate::policy;

/// Whether `bot` may still be elevated to `secret` under `cfg`.
pub fn eligible(cfg: &crate::config::Config, bot: &str, secret: &str) -> bool {
    cfg.elevation.is_some()
        && cfg.bot(bot).is_some_and(|b| b.secrets.contains(secret))
        && cfg.secret(secret).is_some_and(|s| s.privileged)
}

/// Whether window `w` still stands under `cfg`: the bot is still eligible,
/// each approver it counted is still configured, covers the bot's team and
/// does not own it, there are as many as the secret needs, and the window
/// is no longer than `max_window`.
pub fn window_holds(cfg: &crate::config::Config, w: &policy::Window) -> bool {
    let (Some(e), Some(bot), Some(def)) = (&cfg.elevation, cfg.bot(&w.bot), cfg.secret(&w.secret))
    else {
        return false;
    };
    let length = w.not_before.duration_until(w.not_after);
    eligible(cfg, &w.bot, &w.secret)
        && w.approvers.len() >= def.approvals
        && w.approvers.iter().all(|a| {
            cfg.approvers
                .get(a)
                .is_some_and(|a| a.covers(&bot.team) && !a.owns(&bot.owner))
        })
        && jiff::SignedDuration::try_from(e.max_window).is_ok_and(|m| length <= m)
}
