//! What the commands print: aligned tables and lines for people, JSON for scripts.

use std::io::Write;

use serde::Serialize;

use super::{CliResult, Failure};

/// Where and how results are printed.
pub(crate) struct Output {
    /// `--json`: one JSON document on stdout.
    pub(crate) json: bool,
}

impl Output {
    /// Prints `value` as pretty JSON.
    pub(crate) fn json(&self, value: &impl Serialize) -> CliResult {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Failure::other(format!("cannot encode the output: {e}")))?;
        self.print(&text)
    }

    /// Prints `text` and a newline on stdout.
    pub(crate) fn print(&self, text: &str) -> CliResult {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::other(format!("cannot write to stdout: {e}")))
    }

    /// `rows` under `header`, in columns padded to their widest cell.
    pub(crate) fn table(&self, header: &[&str], rows: &[Vec<String>]) -> CliResult {
        self.print(&table(header, rows))
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let t = super::table(
            &["ID", "IP"],
            &[
                vec!["abc".into(), "-".into()],
                vec!["a".into(), "10.0.0.1".into()],
            ],
        );
        assert_eq!(t, "ID   IP\nabc  -\na    10.0.0.1");
    }
}
