//! The `--format html` page of `botward analyze`.

use std::io::{self, Write};

use super::Analysis;

pub fn html(a: &Analysis, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "<!doctype html><meta charset=utf-8><title>botward analysis</title><pre>"
    )?;
    out.write_all(
        super::text(a)
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .as_bytes(),
    )?;
    writeln!(out, "</pre>")
}
