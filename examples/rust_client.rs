//! Fetch a secret from botward in Rust.
//!
//! ```text
//! BOTWARD_ADDR=https://127.0.0.1:8443 BOTWARD_CERT=bot.pem BOTWARD_KEY=bot-key.pem \
//!   BOTWARD_CA=ca.pem cargo run --example rust_client -- erp-db password
//! ```
//!
//! With a field name it prints only that value; without, the data object.
//! `BOTWARD_ADDR` may also be `unix:///run/botward/botward.sock`.

use std::process::ExitCode;

use botward::client::{self, ClientSettings};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(name) = args.next() else {
        eprintln!("usage: rust_client NAME [FIELD]");
        return ExitCode::from(64);
    };
    let field = args.next();
    let env = |k: &str| std::env::var_os(k).map(Into::into);
    let (Some(cert), Some(key), Some(ca)) =
        (env("BOTWARD_CERT"), env("BOTWARD_KEY"), env("BOTWARD_CA"))
    else {
        eprintln!("rust_client: set BOTWARD_CERT, BOTWARD_KEY and BOTWARD_CA");
        return ExitCode::from(64);
    };
    let addr = std::env::var("BOTWARD_ADDR").unwrap_or_else(|_| "https://127.0.0.1:8443".into());
    let settings = ClientSettings {
        addr,
        cert,
        key,
        ca,
    };

    let mut path = format!("/v1/secrets/{}", client::encode(&name));
    if let Some(f) = &field {
        path.push_str(&format!("?field={}", client::encode(f)));
    }
    let answer = match client::call(&settings, "GET", &path).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rust_client: {e}");
            return ExitCode::FAILURE;
        }
    };
    if answer.status != 200 {
        eprintln!("rust_client: {}", client::error_line(&answer));
        return ExitCode::FAILURE;
    }
    // The body is wiped from memory when `answer` is dropped.
    let body = answer.body.expose_secret();
    if field.is_some() {
        println!("{}", String::from_utf8_lossy(body));
    } else {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        println!("{}", v["data"]);
    }
    ExitCode::SUCCESS
}
