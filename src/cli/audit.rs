//! `botward audit`: verify, query, report and export the audit log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::app::EX_USAGE;
use crate::config::Config;

use super::args::{AuditCommand, AuditKeyArgs};

pub(super) fn audit(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify {
            keys,
            anchors,
            files,
        } => audit_verify(&keys, &anchors, files),
        AuditCommand::Query {
            bot,
            claimed_bot,
            secret,
            decision,
            kind,
            since,
            until,
            format,
            files,
        } => {
            let filter = crate::audit::query::Filter {
                bot,
                claimed_bot,
                secret,
                decision,
                kind,
                since,
                until,
            };
            let records = match crate::audit::read_records(&files) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("botward: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match crate::audit::query::write(records, &filter, format, &mut out)
                .and_then(|n| out.flush().map(|_| n))
            {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("botward: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::Report { html, keys, files } => audit_report(&html, &keys, files),
    }
}

fn audit_report(out: &Path, args: &AuditKeyArgs, files: Vec<PathBuf>) -> ExitCode {
    use crate::audit::report::{self, ChainStatus};
    use crate::audit::verify::{self, Outcome};
    let (files, keys) = match audit_inputs(args, files) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("botward: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let chain = if keys.public_key.is_none() && keys.seed.is_none() {
        ChainStatus {
            verdict: "not verified".into(),
            detail: "no public key or seed was given; run with --public-key or --config".into(),
            ok: false,
        }
    } else {
        match verify::verify(&files, &keys) {
            Err(e) => ChainStatus { verdict: "not verified".into(), detail: e.to_string(), ok: false },
            Ok(r) => match r.outcome {
                Outcome::Sealed => ChainStatus {
                    verdict: "intact and sealed".into(),
                    detail: format!("{} records, {} checkpoints, in {} file(s)", r.records, r.checkpoints, r.files),
                    ok: true,
                },
                Outcome::Unsealed { after_checkpoint, unsealed } => ChainStatus {
                    verdict: "intact, tail unsealed".into(),
                    detail: format!(
                        "{} records verified; {unsealed} after {} are not yet sealed (a live log, a crash or a truncation)",
                        r.records,
                        after_checkpoint.map_or("the start".to_string(), |c| format!("the checkpoint at seq {c}"))
                    ),
                    ok: true,
                },
                Outcome::Tampered { file, line, seq, damage, detail } => ChainStatus {
                    verdict: format!("TAMPERED ({damage})"),
                    detail: format!("{}:{line} seq {}: {detail}", file.display(), seq.map_or("?".into(), |s| s.to_string())),
                    ok: false,
                },
            },
        }
    };
    let records = match crate::audit::read_records(&files) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("botward: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let written = std::fs::File::create(out).and_then(|f| {
        let mut w = std::io::BufWriter::new(f);
        report::html(&records, &chain, &mut w)?;
        w.flush()
    });
    match written {
        Ok(()) => {
            println!(
                "wrote {} ({} records; chain: {})",
                out.display(),
                records.len(),
                chain.verdict
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("botward: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// Files and keys for the audit tools, from `--config` or the flags.
fn audit_inputs(
    args: &AuditKeyArgs,
    mut files: Vec<PathBuf>,
) -> Result<(Vec<PathBuf>, crate::audit::verify::Keys), String> {
    use crate::audit::writer::read_hex_file as read_hex;
    let mut keys = crate::audit::verify::Keys::default();
    if let Some(cfg) = &args.config {
        let config = Config::load(cfg).map_err(|p| p.to_string())?;
        keys = crate::audit::writer_key_files(&config.audit).verify_keys()?;
        if files.is_empty() {
            files = crate::audit::log_files(&config.audit.path);
        }
    }
    if let Some(p) = &args.public_key {
        keys.public_key = Some(read_hex(p)?);
    }
    if let Some(p) = &args.seed {
        let raw = zeroize::Zeroizing::new(read_hex(p)?);
        keys.seed =
            Some(zeroize::Zeroizing::new(raw.as_slice().try_into().map_err(
                |_| format!("{}: the seed is not 32 bytes", p.display()),
            )?));
    }
    keys.from_seq = args.from_seq;
    if files.is_empty() {
        return Err("no audit files given".into());
    }
    Ok((files, keys))
}

fn audit_verify(args: &AuditKeyArgs, anchors: &[PathBuf], files: Vec<PathBuf>) -> ExitCode {
    use crate::audit::verify::{self, printable, Outcome};
    let (files, mut keys) = match audit_inputs(args, files) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("botward: {}", printable(&e));
            return ExitCode::from(EX_USAGE);
        }
    };
    if keys.public_key.is_none() && keys.seed.is_none() {
        eprintln!("botward: give --public-key, --seed or --config: without a key the chain proves nothing");
        return ExitCode::from(EX_USAGE);
    }
    keys.anchors = match verify::Anchors::read(anchors) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("botward: {}", printable(&e));
            return ExitCode::from(EX_USAGE);
        }
    };
    let started = std::time::Instant::now();
    let report = match verify::verify(&files, &keys) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("botward: {}", printable(&e.to_string()));
            return ExitCode::from(EX_USAGE);
        }
    };
    let summary = summary(&report, started.elapsed());
    let (verdict, code) = match &report.outcome {
        Outcome::Sealed => (format!("intact and sealed: {summary}"), ExitCode::SUCCESS),
        Outcome::Unsealed {
            after_checkpoint,
            unsealed,
        } => {
            let what = unsealed_tail(*unsealed, *after_checkpoint);
            (
                format!("intact, but {what} (a live log, a crash or a truncation): {summary}"),
                ExitCode::from(2),
            )
        }
        Outcome::Tampered {
            file,
            line,
            seq,
            damage,
            detail,
        } => {
            let seq = seq.map_or("?".into(), |s| s.to_string());
            println!(
                "{}",
                printable(&format!(
                    "TAMPERED: {}:{line} seq {seq}: {damage}: {detail}",
                    file.display()
                ))
            );
            return ExitCode::FAILURE;
        }
    };
    println!("{}", printable(&verdict));
    for line in report.coverage() {
        println!("  {}", printable(&line));
    }
    code
}

/// What was checked, and how much, e.g. `120 records in 2 file(s), seq
/// 1..=120, 3 checkpoints; checked hashes and MACs in 0.01s`.
fn summary(report: &crate::audit::verify::Report, took: std::time::Duration) -> String {
    let checked = match (report.macs_checked, report.signatures_checked) {
        (true, true) => "hashes, MACs and signatures",
        (true, false) => "hashes and MACs",
        (false, _) => "hashes and signatures",
    };
    let range = match (report.first_seq, report.last_seq) {
        (Some(a), Some(b)) => format!("seq {a}..={b}"),
        _ => "no records".into(),
    };
    format!(
        "{} records in {} file(s), {range}, {} checkpoints; checked {checked} in {:.2}s",
        report.records,
        report.files,
        report.checkpoints,
        took.as_secs_f64()
    )
}

/// What an intact log lacks at its end: records after the last checkpoint
/// not sealed, or a checkpoint where the final seal should be.
fn unsealed_tail(unsealed: u64, after_checkpoint: Option<u64>) -> String {
    match (unsealed, after_checkpoint) {
        (0, Some(c)) => format!("the last record is the checkpoint at seq {c}, not a final seal"),
        _ => {
            let since = after_checkpoint.map_or("the start".to_string(), |c| {
                format!("the checkpoint at seq {c}")
            });
            format!("{unsealed} record(s) after {since} are not sealed")
        }
    }
}
