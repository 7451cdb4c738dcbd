//! The built-in data checks (`sparkify check`, `etl --check` before COMMIT), in SQL every
//! SQL sink runs: keys unique and not null, every play's dimensions present, accepted
//! values, freshness and row conservation. Each check is one query that returns its
//! offending keys, the first five in order, each with how many there are in all; no row
//! means it passed.

use crate::model::SongplaysMode;
use crate::sql::{Dialect, literal};

/// What the checks are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Which plays became songplays: with [`SongplaysMode::All`], a play's NULL song and
    /// artist are not missing dimensions.
    pub mode: SongplaysMode,
    /// Freshness: the newest play may be at most this old (no freshness check when `None`).
    pub max_age: Option<std::time::Duration>,
    /// When freshness is measured from, in milliseconds since the epoch (UTC); `None`: now.
    pub as_of_ms: Option<i64>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            mode: SongplaysMode::Matched,
            max_age: None,
            as_of_ms: None,
        }
    }
}

/// The name of the check that holds the staged rows to `etl_files` (a sink without a ledger,
/// a Parquet lake, cannot run it).
pub const ROW_CONSERVATION: &str = "row_conservation";

/// Offending keys a failed check shows at most.
pub const SHOWN_KEYS: usize = 5;

/// One check: its name, the rule in words, and the query that finds what breaks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub rule: String,
    pub sql: String,
}

impl Check {
    /// What `--dry-run` shows of the check: its name and its query.
    pub fn text(&self) -> String {
        format!(
            "-- check {}: fails the load if it returns a row:\n{}",
            self.name, self.sql
        )
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub rule: String,
    /// How many keys break the rule (0: it passed).
    pub failing: u64,
    /// The first [`SHOWN_KEYS`] of them, in order.
    pub keys: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failing == 0
    }
}

fn describe(failed: &[Outcome]) -> String {
    let each: Vec<String> = failed
        .iter()
        .map(|o| {
            let keys: Vec<String> = o.keys.iter().map(|k| format!("[{k}]")).collect();
            let more = match o.failing as usize > o.keys.len() {
                true => " …",
                false => "",
            };
            format!(
                "{} fails for {} key{} ({}), first {}{more}",
                o.name,
                o.failing,
                if o.failing == 1 { "" } else { "s" },
                o.rule,
                keys.join(" ")
            )
        })
        .collect();
    format!(
        "{} check{} failed: {}",
        failed.len(),
        if failed.len() == 1 { "" } else { "s" },
        each.join("; ")
    )
}

/// Every check, in the order they are reported.
pub fn checks(options: &CheckOptions, dialect: &Dialect) -> Vec<Check> {
    let mut out = Vec::new();
    let keys: [(&str, &[&str]); 5] = [
        ("dm_users", &["user_id"]),
        ("dm_songs", &["song_id"]),
        ("dm_artists", &["artist_id"]),
        ("dm_time", &["start_time"]),
        ("ft_songplays", &["session_id", "item_in_session"]),
    ];
    for (table, key) in keys {
        let nulls: Vec<String> = key.iter().map(|k| format!("{k} IS NULL")).collect();
        out.push(check(
            format!("unique_key:{table}"),
            format!("{table} ({}) unique and not null", key.join(", ")),
            format!(
                "SELECT {} AS offending FROM {table} GROUP BY {} HAVING COUNT(*) > 1 OR {}",
                shown(key),
                key.join(", "),
                nulls.join(" OR ")
            ),
        ));
    }
    let nullable = |column: &str| {
        options.mode == SongplaysMode::All && matches!(column, "song_id" | "artist_id")
    };
    for (column, dimension) in [
        ("user_id", "dm_users"),
        ("song_id", "dm_songs"),
        ("artist_id", "dm_artists"),
        ("start_time", "dm_time"),
    ] {
        let (rule, skip_null) = match nullable(column) {
            true => (format!("every non-NULL {column} in {dimension}"), true),
            false => (format!("every {column} in {dimension}"), false),
        };
        out.push(check(
            format!("relationship:ft_songplays.{column}"),
            rule,
            format!(
                "SELECT DISTINCT {} AS offending FROM ft_songplays AS f \
                 LEFT JOIN {dimension} AS d ON f.{column} = d.{column} \
                 WHERE d.{column} IS NULL{}",
                shown(&[&format!("f.{column}")]),
                if skip_null {
                    format!(" AND f.{column} IS NOT NULL")
                } else {
                    String::new()
                }
            ),
        ));
    }
    let levels = "('free', 'paid')";
    for (table, key) in [
        ("dm_users", &["user_id"][..]),
        ("ft_songplays", &["session_id", "item_in_session"][..]),
    ] {
        out.push(check(
            format!("accepted_values:{table}.level"),
            "level in {free, paid}".into(),
            format!(
                "SELECT {} || ': ' || level AS offending FROM {table} WHERE level NOT IN {levels}",
                shown(key)
            ),
        ));
    }
    out.push(check(
        "accepted_values:dm_users.gender".into(),
        "gender in {F, M} or NULL".into(),
        format!(
            "SELECT {} || ': ' || gender AS offending FROM dm_users WHERE gender NOT IN ('F', 'M')",
            shown(&["user_id"])
        ),
    ));
    for (column, low, high) in [("weekday", 1, 7), ("hour", 0, 23)] {
        out.push(check(
            format!("accepted_values:dm_time.{column}"),
            format!("{column} from {low} to {high}"),
            format!(
                "SELECT {} || ': ' || CAST({column} AS VARCHAR) AS offending FROM dm_time \
                 WHERE {column} NOT BETWEEN {low} AND {high}",
                shown(&["start_time"])
            ),
        ));
    }
    if let Some(max_age) = options.max_age {
        let as_of = options
            .as_of_ms
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let cutoff = as_of - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX / 2);
        let cutoff = timestamp(cutoff);
        out.push(check(
            "freshness:ft_songplays".into(),
            format!(
                "the newest play at or after {} ({} before {})",
                cutoff,
                humanize(max_age),
                timestamp(as_of)
            ),
            format!(
                "SELECT 'newest play ' || COALESCE(CAST(MAX(start_time) AS VARCHAR), 'none') \
                 AS offending FROM ft_songplays \
                 HAVING MAX(start_time) IS NULL OR MAX(start_time) < TIMESTAMP {}",
                literal(&cutoff, dialect)
            ),
        ));
    }
    let conserved = |table: &str, kind: &str| {
        format!(
            "SELECT '{table}: ' || CAST(s.n AS VARCHAR) || ' rows of known files, etl_files says ' \
             || CAST(COALESCE(e.n, 0) AS VARCHAR) AS offending \
             FROM (SELECT COUNT(etl_file_id) AS n FROM {table}) AS s \
             CROSS JOIN (SELECT SUM(rows_staged) AS n FROM etl_files WHERE kind = '{kind}') AS e \
             WHERE s.n <> COALESCE(e.n, 0)"
        )
    };
    out.push(check(
        ROW_CONSERVATION.into(),
        "rows staged = etl_files.rows_staged summed, per kind".into(),
        format!(
            "{} UNION ALL {}",
            conserved("staging_events", "events"),
            conserved("staging_songs", "songs")
        ),
    ));
    out
}

/// A check whose `offenders` query returns one text column, `offending`.
fn check(name: String, rule: String, offenders: String) -> Check {
    Check {
        name,
        rule,
        sql: format!(
            "SELECT offending, COUNT(*) OVER () AS failing FROM ({offenders}) AS o \
             ORDER BY offending LIMIT {SHOWN_KEYS}"
        ),
    }
}

/// A key as text: its columns joined by `, `, NULL shown as `NULL`.
fn shown(key: &[&str]) -> String {
    key.iter()
        .map(|k| format!("COALESCE(CAST({k} AS VARCHAR), 'NULL')"))
        .collect::<Vec<_>>()
        .join(" || ', ' || ")
}

fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn humanize(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A query's rows, every value as text (`None` for NULL).
pub type TextRows = [Vec<Option<String>>];

/// What `check` found, from the rows its query returned.
pub fn outcome(check: &Check, rows: &TextRows) -> Outcome {
    let keys: Vec<String> = rows
        .iter()
        .map(|r| r.first().cloned().flatten().unwrap_or_default())
        .collect();
    let failing = rows
        .first()
        .and_then(|r| r.get(1).cloned().flatten())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Outcome {
        name: check.name.clone(),
        rule: check.rule.clone(),
        failing,
        keys,
    }
}

/// Runs every check with `query`, which returns a query's rows; the outcomes in order.
pub fn run<E>(
    checks: &[Check],
    mut query: impl FnMut(&str) -> Result<Vec<Vec<Option<String>>>, E>,
) -> Result<Vec<Outcome>, E> {
    checks
        .iter()
        .map(|c| Ok(outcome(c, &query(&c.sql)?)))
        .collect()
}

/// The failed checks of `outcomes` as an error ([`crate::Error::ChecksFailed`]), each named
/// with its first offending keys; `Ok` when every one passed.
pub fn passed(outcomes: Vec<Outcome>) -> crate::Result<()> {
    let failed: Vec<Outcome> = outcomes.into_iter().filter(|o| !o.passed()).collect();
    match failed.is_empty() {
        true => Ok(()),
        false => Err(crate::Error::ChecksFailed(describe(&failed))),
    }
}

/// A duration as `--max-age` takes it: a number and a unit, `s`, `m`, `h` or `d` (`26h`,
/// `2d`, `90m`).
pub fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = crate::text::number_and_unit(text).ok_or_else(|| {
        format!("{text:?} is not an age: expected a number and a unit, as in 26h")
    })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => return Err(format!("{other:?} is not a unit: use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(number * seconds))
}

/// A moment as `--as-of` takes it, in UTC unless it says otherwise: `2018-12-01`,
/// `2018-12-01T06:00:00`, `2018-12-01 06:00:00` or RFC 3339 (`2018-12-01T06:00:00+01:00`);
/// milliseconds since the epoch.
pub fn parse_as_of(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            format!("{text:?} is not a time: expected 2018-12-01, 2018-12-01T06:00:00 or RFC 3339")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_is_its_first_keys_and_their_total() {
        let c = &checks(&CheckOptions::default(), &Dialect::DuckDb)[0];
        let rows = vec![
            vec![Some("7".into()), Some("9".into())],
            vec![Some("8".into()), Some("9".into())],
        ];
        let o = outcome(c, &rows);
        assert_eq!(
            (o.failing, o.keys.clone()),
            (9, vec!["7".into(), "8".into()])
        );
        let err = passed(vec![o]).unwrap_err().to_string();
        assert_eq!(
            err,
            "1 check failed: unique_key:dm_users fails for 9 keys (dm_users (user_id) unique \
             and not null), first [7] [8] …; nothing was committed"
        );
        assert!(passed(vec![outcome(c, &[])]).is_ok());
    }

    #[test]
    fn freshness_is_checked_only_when_asked() {
        let names = |o: &CheckOptions| -> Vec<String> {
            checks(o, &Dialect::Postgres)
                .into_iter()
                .map(|c| c.name)
                .collect()
        };
        assert!(!names(&CheckOptions::default()).contains(&"freshness:ft_songplays".into()));
        let fresh = CheckOptions {
            max_age: Some(parse_age("26h").unwrap()),
            as_of_ms: Some(1_543_622_400_000),
            ..CheckOptions::default()
        };
        let c = checks(&fresh, &Dialect::Postgres)
            .into_iter()
            .find(|c| c.name == "freshness:ft_songplays")
            .unwrap();
        assert!(
            c.sql.contains("TIMESTAMP '2018-11-29 22:00:00'"),
            "{}",
            c.sql
        );
        assert_eq!(
            c.rule,
            "the newest play at or after 2018-11-29 22:00:00 (26h before 2018-12-01 00:00:00)"
        );
        assert!(parse_age("26").is_err() && parse_age("h").is_err());
        assert_eq!(parse_age("2d").unwrap().as_secs(), 172_800);
        assert_eq!(parse_as_of("2018-12-01"), Ok(1_543_622_400_000));
        assert_eq!(
            parse_as_of("2018-12-01T01:00:00+01:00"),
            Ok(1_543_622_400_000)
        );
        assert_eq!(parse_as_of("2018-12-01 00:00:00"), Ok(1_543_622_400_000));
        assert!(parse_as_of("yesterday").is_err());
    }
}
