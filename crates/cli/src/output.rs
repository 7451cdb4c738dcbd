//! Query results as a person or a script reads them: aligned tables, CSV or JSON.

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use sparkify_core::analytics::Answer;
use sparkify_core::sink::QueryResult;

use crate::args::Format;

/// `result` as `format`.
pub fn result(result: &QueryResult, format: Format) -> String {
    let answer = Answer {
        key: "result",
        title: "",
        columns: result.columns.clone(),
        rows: result.rows.clone(),
    };
    match format {
        Format::Table => table(&answer).to_string(),
        Format::Csv => csv(&answer),
        Format::Json => json(&serde_json::Value::from(rows(&answer))),
    }
}

/// Every answer as `format`: JSON is one object, a key a question, each a list of rows.
pub fn answers(answers: &[Answer], format: Format) -> String {
    match format {
        Format::Table => answers
            .iter()
            .map(|a| format!("{}\n{}\n", a.title, table(a)))
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Csv => answers
            .iter()
            .map(|a| format!("# {}: {}\n{}", a.key, a.title, csv(a)))
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Json => {
            let doc: serde_json::Map<String, serde_json::Value> = answers
                .iter()
                .map(|a| (a.key.to_owned(), rows(a).into()))
                .collect();
            json(&doc.into())
        }
    }
}

fn rows(answer: &Answer) -> Vec<serde_json::Value> {
    answer.objects().into_iter().map(Into::into).collect()
}

fn json(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn table(answer: &Answer) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(answer.columns.clone());
    for row in &answer.rows {
        table.add_row(row.iter().map(|v| match v.as_deref() {
            None => Cell::new("NULL"),
            Some(v) if v.parse::<f64>().is_ok() => Cell::new(v).set_alignment(CellAlignment::Right),
            Some(v) => Cell::new(v),
        }));
    }
    table
}

fn csv(answer: &Answer) -> String {
    let line = |values: Vec<&str>| {
        values
            .into_iter()
            .map(csv_field)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = line(answer.columns.iter().map(String::as_str).collect());
    out.push('\n');
    for row in &answer.rows {
        out += &line(row.iter().map(|v| v.as_deref().unwrap_or("")).collect());
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}
