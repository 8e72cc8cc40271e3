//! Text shown to a person: a field that came from an audit log, a config
//! file or a peer must not move the terminal's cursor, change its colours or
//! start a line of its own. [`escape`] renders every such character as a
//! visible escape, so one field stays one line of output.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// `s` with control and layout characters shown as escapes:
/// - `\n`, `\r` and `\t` as those two characters;
/// - every other C0 control (U+0000 to U+001F) and DEL as `\xHH` (ESC is
///   `\x1b`);
/// - the C1 controls (U+0080 to U+009F), the line and paragraph separators
///   (U+2028, U+2029) and the bidirectional controls (U+061C, U+200E,
///   U+200F, U+202A to U+202E, U+2066 to U+2069), which can reorder what a
///   reader sees, as `\u{hex}` (CSI is `\u{9b}`).
///
/// Everything else, backslashes included, is kept as it is, so Windows paths
/// stay readable. Text without such characters is returned unchanged and
/// unallocated.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Serialized JSON with the characters `serde_json` leaves raw and a
/// terminal may act on (DEL, the C1 controls, the separators and bidi
/// controls of [`escape`]) written as `\uXXXX`. Outside strings, JSON text
/// holds none of them, so the result is the same JSON value. (The C0
/// controls are escaped within strings already; outside, `\n`, `\r` and
/// `\t` are the layout of pretty-printed JSON.)
pub fn escape_json(json: &str) -> Cow<'_, str> {
    let raw = |c: char| needs_escape(c) && c >= '\u{7f}';
    if !json.chars().any(raw) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A value whose `Display` is escaped like [`escape`]: for `format!` and
/// `println!` arguments that are not strings yet (a path's `display()`, an
/// error).
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = EscapingWriter(f);
        write!(w, "{}", self.0)
    }
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(&escape(s))
    }
}

/// Whether `s` reads as what it is: none of the characters [`escape`]
/// shows as escapes, and none of the invisible ones (zero-width spaces and
/// joiners, word joiners, invisible operators, the soft hyphen, the byte
/// order mark, the Mongolian vowel separator, the tag characters) that
/// make two different strings look the same. For free text a person will
/// read and act on, such as an elevation request's reason.
pub fn is_plain(s: &str) -> bool {
    !s.chars().any(|c| {
        needs_escape(c)
            || matches!(
                c,
                '\u{00ad}'
                    | '\u{180e}'
                    | '\u{200b}'..='\u{200d}'
                    | '\u{2060}'..='\u{2064}'
                    | '\u{feff}'
                    | '\u{e0000}'..='\u{e007f}'
            )
    })
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Bytes as lowercase hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_reordering_characters_are_not_plain() {
        assert!(is_plain("month end close, CHG-1234 (Zürich)"));
        for c in [
            '\n',
            '\u{1b}',
            '\u{202e}',
            '\u{2066}',
            '\u{200b}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{e0041}',
        ] {
            assert!(!is_plain(&format!("pay{c}ment")), "{:x}", c as u32);
        }
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "invoice-bot",
            "C:\\Program Files\\rpa\\bot.exe",
            "naïve 日本",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn a_crafted_path_stays_on_one_line_without_escape_sequences() {
        let s = escape("/opt/x\n\u{1b}[31mFAKE LINE");
        assert_eq!(s, "/opt/x\\n\\x1b[31mFAKE LINE");
        assert!(!s.contains('\n') && !s.contains('\u{1b}'));
    }

    #[test]
    fn every_c0_c1_and_del_is_escaped() {
        assert_eq!(escape("\r\t\0\u{7f}"), "\\r\\t\\x00\\x7f");
        assert_eq!(escape("a\u{9b}2Jb\u{85}"), "a\\u{9b}2Jb\\u{85}");
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let e = escape(&c.to_string()).into_owned();
            assert!(
                e.starts_with('\\') && e.chars().all(|c| !c.is_control()),
                "{c:?}: {e}"
            );
        }
    }

    #[test]
    fn separators_and_bidi_controls_are_escaped() {
        assert_eq!(escape("a\u{2028}b\u{2029}"), "a\\u{2028}b\\u{2029}");
        assert_eq!(escape("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(escape("\u{2066}\u{2069}"), "\\u{2066}\\u{2069}");
    }

    #[test]
    fn json_keeps_its_value_without_raw_controls() {
        let v = serde_json::json!({"exe": "/opt/x\n\u{1b}[31m\u{7f}\u{9b}2J\u{202e}"});
        for json in [serde_json::to_string(&v), serde_json::to_string_pretty(&v)] {
            let json = json.unwrap();
            let safe = escape_json(&json);
            assert!(safe.chars().all(|c| !c.is_control() || c == '\n'), "{safe}");
            assert!(safe.contains("\\u007f\\u009b2J\\u202e"), "{safe}");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), v);
        }
        assert!(matches!(escape_json("{\"a\":1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_display_escapes_what_it_formats() {
        let p = std::path::PathBuf::from("/tmp/a\nb");
        assert_eq!(Escaped(p.display()).to_string(), "/tmp/a\\nb");
        assert_eq!(format!("{}", Escaped(42)), "42");
    }
}
