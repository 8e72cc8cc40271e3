//! `botward analyze`: behavioural baselines and anomalies over audit logs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::EX_USAGE;

pub(super) fn analyze(
    train_days: u32,
    tz: Option<&str>,
    format: &str,
    config: Option<&std::path::Path>,
    files: &[PathBuf],
) -> ExitCode {
    use std::io::BufRead;
    let tz = match tz {
        None => jiff::tz::TimeZone::system(),
        Some(name) => match jiff::tz::TimeZone::get(name) {
            Ok(tz) => tz,
            Err(_) => {
                eprintln!("botward: unknown time zone {name:?}");
                return ExitCode::from(EX_USAGE);
            }
        },
    };
    if !matches!(format, "text" | "json" | "html") {
        eprintln!("botward: --format is text, json or html");
        return ExitCode::from(EX_USAGE);
    }
    let files = match crate::audit::verify::order_files(files) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("botward: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let train = jiff::SignedDuration::from_hours(24 * i64::from(train_days));
    let mut analyzer = crate::anomaly::Analyzer::new(crate::anomaly::Options { train, tz });
    if let Some(path) = config {
        match privileged_secrets(path) {
            Ok(names) => analyzer = analyzer.privileged(names),
            Err(e) => {
                eprintln!("botward: {}: {e}", path.display());
                return ExitCode::from(EX_USAGE);
            }
        }
    }
    let mut line = Vec::with_capacity(4096);
    for f in &files {
        let file = match std::fs::File::open(f) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("botward: {}: {e}", f.display());
                return ExitCode::from(EX_USAGE);
            }
        };
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => analyzer.line(&line),
                Err(e) => {
                    eprintln!("botward: {}: {e}", f.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let analysis = analyzer.finish();
    for w in &analysis.warnings {
        eprintln!("botward: warning: {w}");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match format {
        "json" => serde_json::to_string_pretty(&analysis.findings)
            .map_err(std::io::Error::other)
            .and_then(|j| writeln!(out, "{}", crate::text::escape_json(&j))),
        "html" => crate::anomaly::html::html(&analysis, &mut out),
        _ => out.write_all(crate::anomaly::text(&analysis).as_bytes()),
    };
    match written.and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("botward: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The names of the `[[secret]]`s a config marks `privileged`. Only the
/// TOML is read: the files a config names need not exist where the logs
/// are analysed.
fn privileged_secrets(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| e.message().to_owned())?;
    let secrets = value.get("secret").and_then(toml::Value::as_array);
    Ok(secrets
        .into_iter()
        .flatten()
        .filter(|s| s.get("privileged").and_then(toml::Value::as_bool) == Some(true))
        .filter_map(|s| {
            s.get("name")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        })
        .collect())
}
