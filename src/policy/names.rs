//! Logical names of secrets and bots, as they appear in the config, in
//! certificates and in request paths.

/// Longest logical secret or bot name.
pub const MAX_NAME_LEN: usize = 128;

/// Whether `name` is a valid logical name for a secret or a bot: ASCII
/// letters, digits, `.`, `_` and `-`, starting with a letter or digit, with no
/// `..` anywhere.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && !name.contains("..")
}

/// Longest approver or owner name in person-name form.
pub const MAX_PERSON_NAME: usize = 128;

/// A person's name as approvers and owners of bots with privileged grants
/// are written: an e-mail-like name, compared without regard to ASCII case.
pub fn is_person_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PERSON_NAME
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b'_' | b'-' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_strict() {
        for ok in ["erp-db", "a", "db.prod_1", "X9"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            ".hidden",
            "a..b",
            "a/b",
            "a%2fb",
            "-x",
            "ä",
            long.as_str(),
            "a b",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
