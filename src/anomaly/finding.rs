//! What the detectors report: the detectors by name, and one finding in
//! the contract's JSON shape.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A detector: the six behavioural ones, scored per run and request, and
/// the two least-privilege ones. Reports and SIEM rules key on their names
/// ([`Detector::as_str`]), which are also their serialized form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    OffSchedule,
    VolumeSpike,
    NewSecret,
    NewSource,
    SequenceChange,
    DeniedBurst,
    UnusedGrant,
    PrivilegeCreep,
}

impl Detector {
    /// Every detector: the behavioural ones, then the least-privilege ones.
    pub const ALL: [Detector; 8] = [
        Detector::OffSchedule,
        Detector::VolumeSpike,
        Detector::NewSecret,
        Detector::NewSource,
        Detector::SequenceChange,
        Detector::DeniedBurst,
        Detector::UnusedGrant,
        Detector::PrivilegeCreep,
    ];
    /// The behavioural detectors, learned from and scored per bot.
    pub const BEHAVIOURAL: [Detector; 6] = [
        Detector::OffSchedule,
        Detector::VolumeSpike,
        Detector::NewSecret,
        Detector::NewSource,
        Detector::SequenceChange,
        Detector::DeniedBurst,
    ];
    /// The least-privilege detectors, judged on grants.
    pub const LEAST_PRIVILEGE: [Detector; 2] = [Detector::UnusedGrant, Detector::PrivilegeCreep];

    /// The detector's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Detector::OffSchedule => "off_schedule",
            Detector::VolumeSpike => "volume_spike",
            Detector::NewSecret => "new_secret",
            Detector::NewSource => "new_source",
            Detector::SequenceChange => "sequence_change",
            Detector::DeniedBurst => "denied_burst",
            Detector::UnusedGrant => "unused_grant",
            Detector::PrivilegeCreep => "privilege_creep",
        }
    }

    /// The detector of that name.
    pub fn parse(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// Detectors order by name.
impl Ord for Detector {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Detector {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The name, padded as a `str` is.
impl std::fmt::Display for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The name, quoted as a `str` is.
impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One finding, in the contract's JSON shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub bot: String,
    pub detector: Detector,
    pub score: u8,
    pub start: String,
    pub end: String,
    pub actual: serde_json::Value,
    pub typical: serde_json::Value,
    pub explanation: String,
    pub evidence: Vec<String>,
}

/// A finding's time: UTC, to the second.
pub fn fmt_ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_names_are_their_serialized_form() {
        for d in Detector::ALL {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
            assert_eq!(Detector::parse(d.as_str()), Some(d));
            assert_eq!(format!("{d}"), d.as_str());
            assert_eq!(format!("{d:?}"), format!("{:?}", d.as_str()));
        }
        assert_eq!(Detector::ALL[..6], Detector::BEHAVIOURAL);
        assert_eq!(Detector::ALL[6..], Detector::LEAST_PRIVILEGE);
        assert_eq!(format!("{:<16}|", Detector::NewSecret), "new_secret      |");
        assert_eq!(Detector::parse("other"), None);
    }
}
