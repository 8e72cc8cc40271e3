//! `botward get`: one secret, written to stdout.

use std::io::Write;
use std::process::ExitCode;

use crate::app::EX_UNAVAILABLE;
use crate::client;

use super::args::ConnArgs;

pub(super) async fn get(name: &str, field: Option<&str>, conn: ConnArgs) -> ExitCode {
    let settings = match super::identity::settings(conn).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut path = format!("/v1/secrets/{}", client::encode(name));
    if let Some(f) = field {
        path.push_str("?field=");
        path.push_str(&client::encode(f));
    }
    let answer = match client::call(&settings, "GET", &path).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("botward: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    if answer.status != 200 {
        eprintln!("botward: {}", client::error_line(&answer));
        return ExitCode::FAILURE;
    }
    let mut out = std::io::stdout().lock();
    let written = if field.is_some() {
        out.write_all(answer.body.expose_secret())
    } else {
        // Print only the data object, on one line.
        match serde_json::from_slice::<serde_json::Value>(answer.body.expose_secret()) {
            Ok(mut v) => {
                let data = v
                    .get_mut("data")
                    .map(serde_json::Value::take)
                    .unwrap_or_default();
                crate::secret::wipe_value(&mut v);
                let mut buf = crate::secret::WipedBuf::with_capacity(answer.body.len() + 1);
                let _ = serde_json::to_writer(buf.as_mut_vec(), &data);
                let mut data = data;
                crate::secret::wipe_value(&mut data);
                buf.extend_from_slice(b"\n");
                out.write_all(buf.expose_secret())
            }
            Err(_) => {
                eprintln!("botward: the response was not JSON");
                return ExitCode::FAILURE;
            }
        }
    };
    if let Err(e) = written.and_then(|_| out.flush()) {
        eprintln!("botward: cannot write to stdout: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
