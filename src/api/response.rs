//! Response bodies and headers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::broker::Reply;
use crate::error::ApiError;
use crate::secret::WipedBuf;

/// The body of every response.
pub type Body = Full<Bytes>;

/// Frames a reply with its status, `x-request-id`, `no-store`, and for a
/// 405 the methods the path takes.
pub fn respond(status: StatusCode, reply: Reply, id: &str, allow: &'static str) -> Response<Body> {
    let (ctype, buf) = match reply {
        Reply::Empty => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = status;
            if let Ok(v) = HeaderValue::from_str(id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            return resp;
        }
        Reply::Json(b) | Reply::Accepted(b) => ("application/json", b),
        Reply::Text(b) => ("text/plain; charset=utf-8", b),
    };
    let mut resp = Response::new(Full::new(buf.into_bytes()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert("x-request-id", v);
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

/// `{"error":{"code","message","request_id"}}`
pub fn error_body(err: &ApiError, id: &str) -> WipedBuf {
    let body = serde_json::json!({"error": {"code": err.code().as_str(), "message": err.message_for_bot(), "request_id": id}});
    json(&body, 256)
}

pub(super) fn json<T: Serialize>(value: &T, estimate: usize) -> WipedBuf {
    let mut buf = WipedBuf::with_capacity(estimate);
    // Serializing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(buf.as_mut_vec(), value);
    buf
}

/// An upper estimate of a value's JSON length, so that the response buffer
/// is allocated once.
fn approx_json_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => json_str_len(s),
        Value::Array(a) => 2 + a.iter().map(|x| approx_json_len(x) + 1).sum::<usize>(),
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| json_str_len(k) + 1 + approx_json_len(x) + 1)
                .sum::<usize>()
        }
    }
}

pub(super) fn approx_json_len_map(m: &serde_json::Map<String, Value>) -> usize {
    2 + m
        .iter()
        .map(|(k, x)| json_str_len(k) + 1 + approx_json_len(x) + 1)
        .sum::<usize>()
}

/// The exact length of a string once JSON-escaped and quoted.
pub(super) fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Forbidden;

    #[test]
    fn error_body_has_the_contract_shape() {
        let b = error_body(&ApiError::Forbidden(Forbidden::NotGranted), "abc");
        let v: Value = serde_json::from_slice(b.expose_secret()).unwrap();
        assert_eq!(v["error"]["code"], "forbidden");
        assert_eq!(v["error"]["request_id"], "abc");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not granted"));
    }

    #[test]
    fn estimate_covers_serialized_size() {
        let v = serde_json::json!({"a": "x\"y\\z\u{1}\n", "b": [1, 2.5, null], "c": {"d": "ééé"}});
        assert!(approx_json_len(&v) >= serde_json::to_string(&v).unwrap().len());
    }
}
