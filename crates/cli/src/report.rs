//! `sparkify analytics --html`: the answers as one self-contained HTML page (inline CSS and
//! SVG, nothing fetched): a bar chart a question, each with its numbers as a table, and the
//! tables' row counts and the last run's rejects.

use std::fmt::Write;

use sparkify_core::analytics::Answer;

/// What the page shows besides the answers: the tables' rows and the rejects by reason.
pub use sparkify::query::Overview as Extras;

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;\
color:#222;padding:0 1em}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em}\
td.n{text-align:right;font-variant-numeric:tabular-nums}caption{text-align:left;color:#555;white-space:nowrap}\
svg{display:block;max-width:100%}.bar{fill:#3b7dd8}.label,.value{font-size:12px;fill:#222}";

/// The page.
pub fn render(answers: &[Answer], extras: &Extras) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Sparkify analytics</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Sparkify analytics</h1>\n<p>From <code>{}</code>.</p>\n",
        esc(&extras.sink)
    );
    for answer in answers {
        let _ = write!(
            page,
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            answer.key,
            esc(answer.title)
        );
        let bars = bars(answer);
        if !bars.is_empty() {
            page += &if answer.key == "plays_by_hour" {
                columns_chart(answer.key, &bars)
            } else {
                bar_chart(answer.key, &bars)
            };
        }
        page += &table(answer.title, &answer.columns, &answer.rows);
        page += "</section>\n";
    }
    page += "<section id=\"row_counts\">\n<h2>Rows per table</h2>\n";
    let counts = |rows: &[(String, u64)]| -> Vec<Vec<Option<String>>> {
        rows.iter()
            .map(|(k, n)| vec![Some(k.clone()), Some(n.to_string())])
            .collect()
    };
    page += &table(
        "Rows per table",
        &["table".into(), "rows".into()],
        &counts(&extras.counts),
    );
    page += "</section>\n";
    if let Some(rejects) = &extras.rejects {
        let total: u64 = rejects.iter().map(|(_, n)| n).sum();
        let _ = write!(
            page,
            "<section id=\"rejects\">\n<h2>Rejects of the last load</h2>\n<p>{total} rejected \
             records.</p>\n"
        );
        if !rejects.is_empty() {
            page += &table(
                "Rejects by reason",
                &["reason".into(), "records".into()],
                &counts(rejects),
            );
        }
        page += "</section>\n";
    }
    page += "</body>\n</html>\n";
    page
}

/// The answer as (label, value) bars: the last column is the count; the label is what names
/// the row (a song's title and artist, a user's name, a weekday).
fn bars(answer: &Answer) -> Vec<(String, u64)> {
    let col = |name: &str| answer.columns.iter().position(|c| c == name);
    let value_col = match answer.key {
        "users_by_level" => col("users"),
        "level_changes_by_week" => col("upgrades"),
        "paid_share_by_week" => col("paid_plays"),
        "free_vs_paid" => return Vec::new(),
        _ => col("plays"),
    };
    let Some(value_col) = value_col else {
        return Vec::new();
    };
    let get = |row: &[Option<String>], name: &str| -> String {
        col(name)
            .and_then(|i| row.get(i).cloned().flatten())
            .unwrap_or_default()
    };
    answer
        .rows
        .iter()
        .map(|row| {
            let label = match answer.key {
                "top_songs" => format!("{} — {}", get(row, "title"), get(row, "artist")),
                "top_artists" => get(row, "artist"),
                "users_by_level" => get(row, "level"),
                "plays_by_weekday" => weekday(&get(row, "weekday")),
                "plays_by_hour" => get(row, "hour"),
                "level_changes_by_week" | "paid_share_by_week" => {
                    format!("{} week {}", get(row, "year"), get(row, "week"))
                }
                "top_users" => format!(
                    "{} {} ({})",
                    get(row, "first_name"),
                    get(row, "last_name"),
                    get(row, "user_id")
                ),
                _ => row.first().cloned().flatten().unwrap_or_default(),
            };
            let value = row
                .get(value_col)
                .and_then(|v| v.as_deref()?.parse().ok())
                .unwrap_or(0);
            (label, value)
        })
        .collect()
}

fn weekday(iso: &str) -> String {
    const NAMES: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    iso.parse::<usize>()
        .ok()
        .and_then(|d| NAMES.get(d.checked_sub(1)?))
        .map_or_else(|| iso.to_owned(), |n| (*n).to_owned())
}

/// Horizontal bars, one a row, labels on the left.
fn bar_chart(key: &str, bars: &[(String, u64)]) -> String {
    const LABEL: u32 = 330;
    const WIDTH: u32 = 300;
    const ROW: u32 = 22;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let height = ROW * bars.len() as u32;
    let mut svg = format!(
        "<svg class=\"chart\" data-chart=\"{key}\" role=\"img\" aria-hidden=\"true\" \
         viewBox=\"0 0 {} {height}\" width=\"{}\" height=\"{height}\">\n",
        LABEL + WIDTH + 60,
        LABEL + WIDTH + 60
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = ROW * i as u32;
        let w = (u64::from(WIDTH) * value / max) as u32;
        let _ = writeln!(
            svg,
            "<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{LABEL}\" y=\"{}\" width=\"{w}\" height=\"{}\" \
             data-label=\"{}\" data-value=\"{value}\"></rect>\
             <text class=\"value\" x=\"{}\" y=\"{}\">{value}</text>",
            LABEL - 8,
            y + 15,
            esc(&truncate(label, 48)),
            y + 3,
            ROW - 6,
            esc(label),
            LABEL + w + 6,
            y + 15,
        );
    }
    svg += "</svg>\n";
    svg
}

/// Vertical bars, one a row, labels below (the 24 hours).
fn columns_chart(key: &str, bars: &[(String, u64)]) -> String {
    const HEIGHT: u32 = 160;
    const COL: u32 = 26;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let width = COL * bars.len() as u32;
    let mut svg = format!(
        "<svg class=\"chart\" data-chart=\"{key}\" role=\"img\" aria-hidden=\"true\" \
         viewBox=\"0 0 {width} {}\" width=\"{width}\" height=\"{}\">\n",
        HEIGHT + 40,
        HEIGHT + 40
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let x = COL * i as u32;
        let h = (u64::from(HEIGHT) * value / max) as u32;
        let _ = writeln!(
            svg,
            "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\" \
             data-label=\"{}\" data-value=\"{value}\"></rect>\
             <text class=\"value\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{value}</text>\
             <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + 3,
            HEIGHT + 14 - h,
            COL - 6,
            esc(label),
            x + COL / 2,
            HEIGHT + 10 - h,
            x + COL / 2,
            HEIGHT + 32,
            esc(label),
        );
    }
    svg += "</svg>\n";
    svg
}

/// The numbers, as an accessible table.
fn table(caption: &str, columns: &[String], rows: &[Vec<Option<String>>]) -> String {
    let mut out = format!("<table>\n<caption>{}</caption>\n<thead><tr>", esc(caption));
    for c in columns {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(c));
    }
    out += "</tr></thead>\n<tbody>\n";
    for row in rows {
        out += "<tr>";
        for v in row {
            match v.as_deref() {
                None => out += "<td>NULL</td>",
                Some(v) if v.parse::<f64>().is_ok() => {
                    let _ = write!(out, "<td class=\"n\">{}</td>", esc(v));
                }
                Some(v) => {
                    let _ = write!(out, "<td>{}</td>", esc(v));
                }
            }
        }
        out += "</tr>\n";
    }
    out += "</tbody>\n</table>\n";
    out
}

fn truncate(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(chars - 1).collect();
    out.push('…');
    out
}

/// Text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_every_hour_gets_a_bar() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let hours = Answer {
            key: "plays_by_hour",
            title: "Plays per hour",
            columns: vec!["hour".into(), "plays".into()],
            rows: (0..24)
                .map(|h| vec![Some(h.to_string()), Some((h * 2).to_string())])
                .collect(),
        };
        let page = render(
            &[hours],
            &Extras {
                sink: "duckdb:<x>".into(),
                counts: vec![("dm_time".into(), 6813)],
                rejects: None,
            },
        );
        assert_eq!(page.matches("<rect class=\"bar\"").count(), 24);
        assert!(page.contains("duckdb:&lt;x&gt;"));
        assert!(!page.contains("id=\"rejects\""));
        assert!(!page.contains("http"), "nothing is fetched");
        assert_eq!(weekday("1"), "Monday");
        assert_eq!(weekday("7"), "Sunday");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
