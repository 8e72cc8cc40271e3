//! Types that hold secret material.
//!
//! Every value that came from Vault, every token and every buffer that carries
//! a secret towards a bot lives in one of these types. None of them implements
//! `Display` or `Serialize`, their `Debug` prints `[REDACTED]`, and all of them
//! wipe their memory when dropped. Reading the value takes an explicit
//! `expose_secret()` call, which is easy to find in review.

use std::fmt;

use bytes::Bytes;
use serde_json::Value;
use zeroize::Zeroize;

/// The fields of one secret as read from Vault: a JSON object whose values
/// are secret. Field names are not secret and may be listed.
pub struct SecretFields(serde_json::Map<String, Value>);

// === impl SecretFields ===

impl SecretFields {
    /// Takes ownership of a JSON object from Vault. Anything that is not an
    /// object is wiped and refused.
    pub fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self(map)),
            mut other => {
                wipe_value(&mut other);
                None
            }
        }
    }

    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Direct access to the secret values.
    pub fn expose_secret(&self) -> &serde_json::Map<String, Value> {
        &self.0
    }

    /// The plain-text form of one field: a JSON string as its contents, any
    /// other JSON value as its JSON text.
    pub fn field_text(&self, field: &str) -> Option<WipedBuf> {
        let value = self.0.get(field)?;
        let mut buf = WipedBuf::with_capacity(64);
        match value {
            Value::String(s) => buf.extend_from_slice(s.as_bytes()),
            other => {
                // Writing into a `Vec` cannot fail.
                let _ = serde_json::to_writer(buf.as_mut_vec(), other);
            }
        }
        Some(buf)
    }
}

impl fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFields")
            .field("fields", &self.0.keys().collect::<Vec<_>>())
            .field("values", &"[REDACTED]")
            .finish()
    }
}

impl Drop for SecretFields {
    fn drop(&mut self) {
        for (_, v) in self.0.iter_mut() {
            wipe_value(v);
        }
    }
}

/// Overwrites every string inside a JSON value with zeros. Numbers and
/// booleans have no heap storage to wipe.
pub fn wipe_value(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe_value),
        Value::Object(map) => map.iter_mut().for_each(|(_, v)| wipe_value(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A byte buffer that is wiped when dropped: response bodies that carry
/// secrets are built in one of these and handed to hyper as `Bytes` whose
/// owner wipes the buffer once the last reference is gone.
pub struct WipedBuf(Vec<u8>);

// === impl WipedBuf ===

impl WipedBuf {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    /// Grows the buffer so that the next `additional` bytes fit, wiping the
    /// old allocation if it has to move.
    pub fn reserve(&mut self, additional: usize) {
        if self.0.capacity() - self.0.len() >= additional {
            return;
        }
        let mut bigger = Vec::with_capacity((self.0.len() + additional).max(self.0.capacity() * 2));
        bigger.extend_from_slice(&self.0);
        self.0.zeroize();
        self.0 = bigger;
    }

    /// The underlying vector, for writers such as `serde_json::to_writer`.
    /// Callers reserve enough room first where they can; a reallocation
    /// inside the writer leaves the old block to the wiping allocator.
    pub fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Hands the buffer to hyper without copying it. The buffer is wiped when
    /// the last `Bytes` that points into it is dropped.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for WipedBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WipedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WipedBuf([REDACTED; {} bytes])", self.0.len())
    }
}

impl Drop for WipedBuf {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Compares two byte strings in constant time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    #[allow(deprecated)]
    ring::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_secret_fields_shows_names_but_not_values() {
        let v = serde_json::json!({"username": "bot", "password": "hunter2-very-secret"});
        let f = SecretFields::from_value(v).unwrap();
        let dbg = format!("{f:?}");
        assert!(dbg.contains("password"));
        assert!(!dbg.contains("hunter2"));
        assert!(!dbg.contains("\"bot\""));
    }

    #[test]
    fn field_text_unquotes_strings_and_renders_other_values_as_json() {
        let v = serde_json::json!({"s": "abc", "n": 42, "o": {"k": true}});
        let f = SecretFields::from_value(v).unwrap();
        assert_eq!(f.field_text("s").unwrap().expose_secret(), b"abc");
        assert_eq!(f.field_text("n").unwrap().expose_secret(), b"42");
        assert_eq!(f.field_text("o").unwrap().expose_secret(), br#"{"k":true}"#);
        assert!(f.field_text("missing").is_none());
    }

    #[test]
    fn non_object_secret_data_is_refused() {
        assert!(SecretFields::from_value(serde_json::json!("x")).is_none());
    }

    #[test]
    fn wiped_buf_grows_and_debug_is_redacted() {
        let mut b = WipedBuf::with_capacity(1);
        b.extend_from_slice(b"top-secret-value");
        b.extend_from_slice(b"-more");
        assert_eq!(b.expose_secret(), b"top-secret-value-more");
        assert!(!format!("{b:?}").contains("top-secret"));
        let bytes = b.into_bytes();
        assert_eq!(&bytes[..], b"top-secret-value-more");
    }

    #[test]
    fn wipe_value_clears_nested_strings() {
        let mut v = serde_json::json!({"a": ["xyz", {"b": "q"}]});
        wipe_value(&mut v);
        let s = v.to_string();
        assert!(!s.contains("xyz"));
        assert!(!s.contains('q'));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
