//! Rendering for people: plain aligned columns, no borders, nothing to strip in scripts.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::failure::Failure;

/// Shown for absent values, so columns never collapse.
pub const NONE: &str = "-";

/// What a command prints: `stdout` is the result, `note` a hint for people on stderr.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub note: Option<String>,
}

impl Output {
    pub fn text(stdout: String) -> Output {
        Output { stdout, note: None }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Output {
        self.note = Some(note.into());
        self
    }
}

/// Pretty JSON of a response, newline-terminated.
pub fn json(value: &impl Serialize) -> Result<Output, Failure> {
    serde_json::to_string_pretty(value)
        .map(|text| Output::text(text + "\n"))
        .map_err(|e| Failure::Local(format!("cannot render JSON: {e}")))
}

/// Rows of cells aligned in columns separated by two spaces; an optional header row.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn with_header<const N: usize>(header: [&str; N]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) -> &mut Table {
        self.rows.push(cells);
        self
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    // No padding after the last cell: no trailing spaces.
                    line.push_str(cell);
                } else {
                    let pad = widths[c].saturating_sub(cell.chars().count());
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A two-column `name  value` listing of one document.
pub fn pairs(items: &[(&str, String)]) -> String {
    let mut table = Table::default();
    for (name, value) in items {
        table.row(vec![(*name).to_owned(), value.clone()]);
    }
    table.render()
}

pub fn time(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

pub fn opt_time(t: &Option<OffsetDateTime>) -> String {
    t.as_ref().map(time).unwrap_or_else(|| NONE.to_owned())
}

pub fn opt_text(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| NONE.to_owned())
}

pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        NONE.to_owned()
    } else {
        items.join(", ")
    }
}

/// A field of a secret's value as a person wants it: strings bare, the rest as JSON.
pub fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::with_header(["PATH", "TYPE", "TAGS"]);
        table
            .row(vec!["app/db".into(), "database".into(), "billing".into()])
            .row(vec!["a".into(), "json".into(), "".into()]);
        assert_eq!(
            table.render(),
            "PATH    TYPE      TAGS\n\
             app/db  database  billing\n\
             a       json\n"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut table = Table::default();
        table
            .row(vec!["ünï".into(), "x".into()])
            .row(vec!["abcd".into(), "y".into()]);
        assert_eq!(table.render(), "ünï   x\nabcd  y\n");
    }

    #[test]
    fn an_empty_table_renders_nothing() {
        assert_eq!(Table::default().render(), "");
    }

    #[test]
    fn pairs_and_values() {
        assert_eq!(
            pairs(&[("path", "a/b".into()), ("version", "3".into())]),
            "path     a/b\nversion  3\n"
        );
        assert_eq!(value(&serde_json::json!("s")), "s");
        assert_eq!(value(&serde_json::json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(value(&serde_json::json!(true)), "true");
        assert_eq!(list(&[]), "-");
        assert_eq!(opt_time(&None), "-");
        assert_eq!(time(&OffsetDateTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
