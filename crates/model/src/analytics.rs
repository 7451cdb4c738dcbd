//! The analytics team's questions, answered the same way on every SQL sink: the SQL lives here
//! (plain SQL that DuckDB, PostgreSQL and Redshift all run unchanged), the answers are put
//! together from each query's rows as text, so that the same tables give the same answers
//! byte for byte whichever database holds them.
//!
//! Plays are `ft_songplays` rows. Ties are broken by the count descending, then the id
//! ascending (SPEC "Analytics"), so every answer is one total order.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::text::QueryResult;

/// One question: its key (in JSON), its title, and its query.
#[derive(Debug, Clone, Copy)]
pub struct Question {
    pub key: &'static str,
    pub title: &'static str,
    pub sql: &'static str,
}

/// Every question, in report order.
pub const QUESTIONS: [Question; 8] = [
    Question {
        key: "top_songs",
        title: "Top 10 songs by plays",
        sql: "SELECT s.song_id, s.title, a.name AS artist, COUNT(*) AS plays
FROM ft_songplays AS p
JOIN dm_songs AS s ON s.song_id = p.song_id
LEFT JOIN dm_artists AS a ON a.artist_id = s.artist_id
GROUP BY s.song_id, s.title, a.name
ORDER BY plays DESC, s.song_id
LIMIT 10",
    },
    Question {
        key: "top_artists",
        title: "Top 10 artists by plays",
        sql: "SELECT a.artist_id, a.name AS artist, COUNT(*) AS plays
FROM ft_songplays AS p
JOIN dm_artists AS a ON a.artist_id = p.artist_id
GROUP BY a.artist_id, a.name
ORDER BY plays DESC, a.artist_id
LIMIT 10",
    },
    Question {
        key: "users_by_level",
        title: "Free and paid users",
        sql: "SELECT level, COUNT(*) AS users
FROM dm_users
GROUP BY level
ORDER BY level",
    },
    Question {
        key: "plays_by_weekday",
        title: "Plays per ISO weekday (1 = Monday), busiest first",
        sql: "SELECT t.weekday, COUNT(*) AS plays
FROM ft_songplays AS p
JOIN dm_time AS t ON t.start_time = p.start_time
GROUP BY t.weekday
ORDER BY plays DESC, t.weekday",
    },
    Question {
        key: "plays_by_hour",
        title: "Plays per hour of day (UTC)",
        sql: "SELECT t.hour, COUNT(*) AS plays
FROM ft_songplays AS p
JOIN dm_time AS t ON t.start_time = p.start_time
GROUP BY t.hour
ORDER BY t.hour",
    },
    Question {
        key: "top_users",
        title: "Top 10 users by plays",
        sql: "SELECT u.user_id, u.first_name, u.last_name, u.level, COUNT(*) AS plays
FROM ft_songplays AS p
JOIN dm_users AS u ON u.user_id = p.user_id
GROUP BY u.user_id, u.first_name, u.last_name, u.level
ORDER BY plays DESC, u.user_id
LIMIT 10",
    },
    Question {
        key: "level_changes_by_week",
        title: "Upgrades (free to paid) and downgrades (paid to free) per week",
        sql: "SELECT CAST(EXTRACT(year FROM valid_from) AS INTEGER) AS year,
       CAST(EXTRACT(week FROM valid_from) AS INTEGER) AS week,
       COUNT(CASE WHEN level = 'paid' THEN 1 END) AS upgrades,
       COUNT(CASE WHEN level = 'free' THEN 1 END) AS downgrades
FROM (
    SELECT level, valid_from,
           ROW_NUMBER() OVER (
               PARTITION BY user_id ORDER BY valid_from, valid_to NULLS LAST, level
           ) AS run
    FROM dm_users_history
) AS runs
WHERE run > 1
GROUP BY CAST(EXTRACT(year FROM valid_from) AS INTEGER), CAST(EXTRACT(week FROM valid_from) AS INTEGER)
ORDER BY year, week",
    },
    Question {
        key: "paid_share_by_week",
        title: "Plays by paid users per week",
        sql: "SELECT t.year, t.week, COUNT(*) AS plays,
       COUNT(CASE WHEN p.level = 'paid' THEN 1 END) AS paid_plays
FROM ft_songplays AS p
JOIN dm_time AS t ON t.start_time = p.start_time
GROUP BY t.year, t.week
ORDER BY t.year, t.week",
    },
];

/// The last load's rejects by reason, most first (for a sink that holds `load_errors`).
pub const REJECTS_BY_REASON: &str = "SELECT reason, COUNT(*) AS records
FROM load_errors
GROUP BY reason
ORDER BY records DESC, reason
LIMIT 20";

/// One answer: a table of text values (`None` for NULL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub key: &'static str,
    pub title: &'static str,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Answer {
    /// The rows as JSON objects, column name to value, numbers as numbers.
    pub fn objects(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.clone(), json_value(v.as_deref())))
                    .collect()
            })
            .collect()
    }
}

/// A value as JSON: integers and decimals as numbers, everything else as a string.
fn json_value(v: Option<&str>) -> serde_json::Value {
    match v {
        None => serde_json::Value::Null,
        Some(text) => match text.parse::<i64>() {
            Ok(n) => n.into(),
            Err(_) => match serde_json::from_str::<serde_json::Number>(text) {
                Ok(n) if text.contains('.') => serde_json::Value::Number(n),
                _ => text.into(),
            },
        },
    }
}

/// The answers from each question's result, in [`QUESTIONS`] order: every hour 0–23 shown
/// (0 plays where there were none), and after the users by level, `free_vs_paid`: the free
/// and paid users and the ratio of free to paid, to two decimals (empty with no paid user).
pub fn answers(results: Vec<QueryResult>) -> Vec<Answer> {
    let mut out = Vec::new();
    for (q, r) in QUESTIONS.iter().zip(results) {
        let ratio = (q.key == "users_by_level").then(|| free_vs_paid(&r.rows));
        let mut columns = r.columns;
        let rows = match q.key {
            "plays_by_hour" => every_hour(r.rows),
            "paid_share_by_week" => {
                columns.push("paid_share".into());
                with_share(r.rows)
            }
            _ => r.rows,
        };
        out.push(Answer {
            key: q.key,
            title: q.title,
            columns,
            rows,
        });
        out.extend(ratio);
    }
    out
}

fn every_hour(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    let counts: BTreeMap<u32, Option<String>> = rows
        .into_iter()
        .filter_map(|r| {
            let hour = r.first()?.as_deref()?.parse().ok()?;
            Some((hour, r.get(1).cloned().flatten()))
        })
        .collect();
    (0..24)
        .map(|h| {
            let plays = counts
                .get(&h)
                .cloned()
                .flatten()
                .unwrap_or_else(|| "0".into());
            vec![Some(h.to_string()), Some(plays)]
        })
        .collect()
}

/// Each week's rows (year, week, plays, paid plays) with the paid plays' share of the plays,
/// to two decimals (worked out here: the sinks divide and round numbers differently).
fn with_share(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    rows.into_iter()
        .map(|mut r| {
            let n = |i: usize| r.get(i)?.as_deref()?.parse::<u64>().ok();
            let share = match (n(2), n(3)) {
                (Some(plays), Some(paid)) if plays > 0 => {
                    Some(format!("{:.2}", paid as f64 / plays as f64))
                }
                _ => None,
            };
            r.push(share);
            r
        })
        .collect()
}

fn free_vs_paid(rows: &[Vec<Option<String>>]) -> Answer {
    let users = |level: &str| -> u64 {
        rows.iter()
            .filter(|r| r.first().and_then(|v| v.as_deref()) == Some(level))
            .filter_map(|r| r.get(1)?.as_deref()?.parse::<u64>().ok())
            .sum()
    };
    let (free, paid) = (users("free"), users("paid"));
    let ratio = (paid > 0).then(|| format!("{:.2}", free as f64 / paid as f64));
    Answer {
        key: "free_vs_paid",
        title: "Free to paid users",
        columns: vec!["free".into(), "paid".into(), "ratio".into()],
        rows: vec![vec![Some(free.to_string()), Some(paid.to_string()), ratio]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rows: &[&[&str]]) -> Vec<Vec<Option<String>>> {
        rows.iter()
            .map(|r| r.iter().map(|v| Some((*v).to_owned())).collect())
            .collect()
    }

    #[test]
    fn every_hour_is_shown_and_the_ratio_has_two_decimals() {
        let hours = every_hour(text(&[&["3", "5"], &["17", "2"]]));
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[3], text(&[&["3", "5"]])[0]);
        assert_eq!(hours[4], text(&[&["4", "0"]])[0]);
        let ratio = free_vs_paid(&text(&[&["free", "75"], &["paid", "22"]]));
        assert_eq!(ratio.rows, text(&[&["75", "22", "3.41"]]));
        assert_eq!(free_vs_paid(&text(&[&["free", "3"]])).rows[0][2], None);
        assert_eq!(
            with_share(text(&[&["2018", "45", "200", "150"]])),
            text(&[&["2018", "45", "200", "150", "0.75"]])
        );
        assert_eq!(json_value(Some("37")), serde_json::json!(37));
        assert_eq!(json_value(Some("3.41")), serde_json::json!(3.41));
        assert_eq!(json_value(Some("1:2")), serde_json::json!("1:2"));
        assert_eq!(json_value(Some("AR0001")), serde_json::json!("AR0001"));
    }
}
