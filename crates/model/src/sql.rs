//! The warehouse SQL, written once: DDL for every table and the transforms from the staging
//! tables to the star schema, with the small differences between DuckDB, PostgreSQL and
//! Amazon Redshift. The transforms implement the orders of `docs/model.md` as `ROW_NUMBER()`
//! windows, the second implementation of SPEC next to [`crate::model`]; tests hold the two
//! to the same tables.

use crate::model::SongplaysMode;
use crate::table::{
    Column, DM_TIME, ETL_FILES, ETL_RUNS, FT_SONGPLAYS, LOAD_ERRORS, SCHEMA_DRIFT, SINK_TABLES,
    STAGING_TABLES, STAR_TABLES, SqlType, TableDef,
};

/// `sparkify tables create` (drop, then create, every table) or `drop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TablesAction {
    Create,
    Drop,
}

/// Which of sparkify's tables (the run history's too) exist in the current schema.
pub fn tables_present() -> String {
    let names: Vec<String> = SINK_TABLES
        .iter()
        .chain([&&ETL_RUNS, &&SCHEMA_DRIFT])
        .map(|t| format!("'{}'", t.name))
        .collect();
    format!(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() \
         AND table_name IN ({})",
        names.join(", ")
    )
}

/// `(table_name, row_count)` for each of `tables`, in one query (the load's reconciliation).
pub fn count_rows(tables: &[&TableDef]) -> String {
    tables
        .iter()
        .map(|t| {
            format!(
                "SELECT '{0}' AS table_name, COUNT(*) AS row_count FROM {0}",
                t.name
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// A SQL dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialect {
    DuckDb,
    Postgres,
    Redshift(RedshiftKeys),
}

/// Redshift's distribution and sort keys per table: `(table, distkey, sortkey)`. The default is
/// the seed design's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedshiftKeys {
    pub keys: Vec<(String, Option<String>, Option<String>)>,
}

impl Default for RedshiftKeys {
    fn default() -> Self {
        let k = |t: &str, d: Option<&str>, s: Option<&str>| {
            (t.to_owned(), d.map(str::to_owned), s.map(str::to_owned))
        };
        RedshiftKeys {
            keys: vec![
                k("staging_events", None, Some("ts")),
                k("dm_users", Some("user_id"), None),
                k("dm_songs", Some("title"), Some("song_id")),
                k("dm_artists", Some("name"), Some("artist_id")),
                k("dm_time", Some("start_time"), Some("weekday")),
                k("ft_songplays", Some("song_id"), Some("song_id")),
            ],
        }
    }
}

impl RedshiftKeys {
    fn of(&self, table: &str) -> (Option<&str>, Option<&str>) {
        self.keys
            .iter()
            .find(|(t, _, _)| t == table)
            .map_or((None, None), |(_, d, s)| (d.as_deref(), s.as_deref()))
    }
}

impl Dialect {
    /// `column`'s type; on Redshift a text column is `VARCHAR(n)`, `n` its fixed width
    /// ([`Column::width`]) or the step above the longest value `widths` holds for it
    /// ([`varchar_width`]), or the most Redshift takes when neither is known.
    fn type_name(&self, table: &TableDef, column: &Column, widths: &Widths) -> String {
        if let (Dialect::Redshift(_), SqlType::Text) = (self, column.ty) {
            let width = column
                .width
                .or_else(|| widths.get(table.name, column.name).map(varchar_width))
                .unwrap_or(VARCHAR_MAX);
            return format!("VARCHAR({width})");
        }
        self.fixed_type_name(column).to_owned()
    }

    fn fixed_type_name(&self, column: &Column) -> &'static str {
        match (self, column.ty) {
            (Dialect::DuckDb, SqlType::Text) => "VARCHAR",
            (Dialect::Postgres, SqlType::Text) => "TEXT",
            (Dialect::Redshift(_), SqlType::Text) => "VARCHAR(65535)",
            (_, SqlType::Integer) => "INTEGER",
            (_, SqlType::BigInt) => "BIGINT",
            (Dialect::DuckDb, SqlType::Double) => "DOUBLE",
            (_, SqlType::Double) => "DOUBLE PRECISION",
            (_, SqlType::Timestamp) => "TIMESTAMP",
            (_, SqlType::Boolean) => "BOOLEAN",
        }
    }

    /// How text is ordered in the dedup rules: by bytes.
    fn collate(&self) -> &'static str {
        match self {
            Dialect::Postgres => " COLLATE \"C\"",
            // DuckDB's default collation is binary; Redshift's default compares bytes.
            Dialect::DuckDb | Dialect::Redshift(_) => "",
        }
    }

    /// Whether the warehouse numbers `songplay_id` itself (Redshift's IDENTITY).
    fn identity_songplays(&self) -> bool {
        matches!(self, Dialect::Redshift(_))
    }

    /// Whether `table` declares its primary key here. DuckDB declares none for the two
    /// tables that grow with every play, `ft_songplays` (a surrogate key nothing joins on)
    /// and `dm_time`: a key is an ART index there, which refuses a duplicate and speeds up
    /// point lookups, not the joins and aggregates of the analytics (DuckDB joins by
    /// hashing), and those two cost a 100x load 0.4 of its 3 s and a 1000x load 3 s, mostly
    /// writing the index out at COMMIT. Every DuckDB load checks every key instead: in SQL
    /// ([`duplicate_keys`]), or, for a full load's rows of those two, on the rows it appends
    /// ([`duplicate_key_in`]).
    pub fn declares_key(&self, table: &TableDef) -> bool {
        let unindexed = match self {
            Dialect::DuckDb => &[FT_SONGPLAYS.name, DM_TIME.name][..],
            Dialect::Postgres | Dialect::Redshift(_) => &[],
        };
        !table.primary_key.is_empty() && !unindexed.contains(&table.name)
    }
}

/// The most bytes a Redshift `VARCHAR` holds.
pub const VARCHAR_MAX: u32 = 65_535;

/// The widths a Redshift text column is given, in bytes: the first step at least as wide as
/// the longest value ([`varchar_width`]). Each step is four times the one before, so a
/// column has room for values up to four times longer than the longest seen before a later
/// load must widen it, and never more than four times the room its values take.
pub const VARCHAR_STEPS: [u32; 7] = [16, 64, 256, 1024, 4096, 16_384, VARCHAR_MAX];

/// The width of a text column whose longest value takes `bytes` ([`VARCHAR_STEPS`]).
pub fn varchar_width(bytes: u32) -> u32 {
    VARCHAR_STEPS
        .into_iter()
        .find(|step| *step >= bytes)
        .unwrap_or(VARCHAR_MAX)
}

/// The longest value, in bytes, of text columns whose width comes from the data a load holds:
/// `(table, column)` → bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Widths(pub std::collections::BTreeMap<(String, String), u32>);

impl Widths {
    /// The longest value of `table.column` seen, in bytes.
    pub fn get(&self, table: &str, column: &str) -> Option<u32> {
        self.0.get(&(table.to_owned(), column.to_owned())).copied()
    }

    /// Notes a value of `bytes` in `table.column`.
    pub fn note(&mut self, table: &str, column: &str, bytes: u32) {
        let held = self
            .0
            .entry((table.to_owned(), column.to_owned()))
            .or_insert(0);
        *held = (*held).max(bytes);
    }

    /// Notes the text columns of `batch`, rows of `table`.
    pub fn observe(&mut self, table: &TableDef, batch: &arrow::array::RecordBatch) {
        use arrow::array::{Array, AsArray};
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let Some(strings) = column.as_string_opt::<i32>() else {
                continue;
            };
            let offsets = strings.value_offsets();
            let longest = (0..strings.len())
                .filter(|i| strings.is_valid(*i))
                .map(|i| offsets[i + 1] - offsets[i])
                .max();
            if let Some(longest) = longest {
                let bytes = u32::try_from(longest).unwrap_or(u32::MAX);
                self.note(table.name, field.name(), bytes);
            }
        }
    }

    /// Every width of `other` too, the longer where both hold one.
    pub fn merge(&mut self, other: &Widths) {
        for ((table, column), bytes) in &other.0 {
            self.note(table, column, *bytes);
        }
    }
}

/// Where each text column of the star schema takes its values from: `(star table, column,
/// staging table, column)`. The transforms copy them or make them shorter (a user agent
/// without its quotes), so a star column is never wider than its source.
pub const STAR_TEXT_SOURCES: [(&str, &str, &str, &str); 16] = [
    ("ft_songplays", "level", "staging_events", "level"),
    ("ft_songplays", "song_id", "staging_songs", "song_id"),
    ("ft_songplays", "artist_id", "staging_songs", "artist_id"),
    ("ft_songplays", "location", "staging_events", "location"),
    ("ft_songplays", "user_agent", "staging_events", "userAgent"),
    ("dm_users", "first_name", "staging_events", "firstName"),
    ("dm_users", "last_name", "staging_events", "lastName"),
    ("dm_users", "gender", "staging_events", "gender"),
    ("dm_users", "level", "staging_events", "level"),
    ("dm_songs", "song_id", "staging_songs", "song_id"),
    ("dm_songs", "title", "staging_songs", "title"),
    ("dm_songs", "artist_id", "staging_songs", "artist_id"),
    ("dm_artists", "artist_id", "staging_songs", "artist_id"),
    ("dm_artists", "name", "staging_songs", "artist_name"),
    ("dm_artists", "location", "staging_songs", "artist_location"),
    ("dm_users_history", "level", "staging_events", "level"),
];

/// The star tables' widths from the staging tables' ([`STAR_TEXT_SOURCES`]). A column whose
/// source holds no value (every one NULL) is as narrow as can be.
pub fn star_widths(staging: &Widths) -> Widths {
    let mut out = Widths::default();
    for (table, column, from, source) in STAR_TEXT_SOURCES {
        out.note(table, column, staging.get(from, source).unwrap_or(0));
    }
    out
}

/// The staging tables' text columns, as `(table, column)` in the order of
/// [`staging_widths_sql`]'s results.
pub fn staging_text_columns(table: &TableDef) -> Vec<&'static str> {
    table
        .columns
        .iter()
        .filter(|c| c.ty == SqlType::Text && c.width.is_none())
        .map(|c| c.name)
        .collect()
}

/// One query for the longest value of each of `table`'s text columns, in bytes (NULL when
/// none holds one), in [`staging_text_columns`]' order.
pub fn staging_widths_sql(table: &TableDef) -> String {
    let columns: Vec<String> = staging_text_columns(table)
        .iter()
        .map(|c| format!("MAX(OCTET_LENGTH({c}))"))
        .collect();
    format!("SELECT {} FROM {}", columns.join(", "), table.name)
}

/// `CREATE TABLE` for `table`.
pub fn create_table(table: &TableDef, dialect: &Dialect) -> String {
    create(table, dialect, true, &Widths::default())
}

/// `CREATE TABLE` for `table`, its text columns sized by `widths` (on Redshift).
pub fn create_table_sized(table: &TableDef, dialect: &Dialect, widths: &Widths) -> String {
    create(table, dialect, true, widths)
}

/// `CREATE TABLE IF NOT EXISTS` for `table`, keyed: an incremental load's first statement
/// for the tables it appends to.
pub fn create_table_if_missing(table: &TableDef, dialect: &Dialect) -> String {
    create_table_if_missing_sized(table, dialect, &Widths::default())
}

/// [`create_table_if_missing`], its text columns sized by `widths` (on Redshift).
pub fn create_table_if_missing_sized(
    table: &TableDef,
    dialect: &Dialect,
    widths: &Widths,
) -> String {
    create(table, dialect, true, widths).replacen("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)
}

/// `CREATE TABLE` for `table` without its primary key, for a load that adds the key once the
/// rows are in: [`duplicate_keys`], then [`add_primary_key`]. DuckDB then builds the
/// index in one pass instead of row by row (the 643,713 rows of a 100x `dm_time` went in
/// 9x faster).
pub fn create_table_unkeyed(table: &TableDef, dialect: &Dialect) -> String {
    create(table, dialect, false, &Widths::default())
}

/// DuckDB: for each of `tables` with a key, its smallest key value held more than once, as
/// rows (table, value as text, count); no row when every key is unique. One query for all of
/// them, since each query has a fixed cost of a few milliseconds. `None` when no table has a
/// key.
pub fn duplicate_keys(tables: &[&TableDef]) -> Option<String> {
    duplicate_keys_where(tables, |_| String::new())
}

/// [`duplicate_keys`] after an incremental load maintained the star ([`maintain_star`], its
/// temporary tables still there): `ft_songplays` and `dm_time`, the two tables DuckDB holds
/// without an index, checked only at the keys of the rows the load made (the plays of the
/// changed sessions, the changed times), which a duplicate of theirs must hold; the other
/// tables whole.
pub fn duplicate_changed_keys(tables: &[&TableDef]) -> Option<String> {
    duplicate_keys_where(tables, |t| match t.name {
        n if n == FT_SONGPLAYS.name => {
            " WHERE songplay_id IN (SELECT songplay_id FROM ft_songplays \
             WHERE session_id IN (SELECT sessionId FROM changed_sessions))"
                .to_owned()
        }
        n if n == DM_TIME.name => " WHERE start_time IN (SELECT ts FROM changed_times)".to_owned(),
        _ => String::new(),
    })
}

fn duplicate_keys_where(
    tables: &[&TableDef],
    filter: impl Fn(&TableDef) -> String,
) -> Option<String> {
    let branches: Vec<String> = tables
        .iter()
        .filter(|t| !t.primary_key.is_empty())
        .map(|t| {
            let key = t.primary_key.join(", ");
            let text = t
                .primary_key
                .iter()
                .map(|k| format!("CAST({k} AS VARCHAR)"))
                .collect::<Vec<_>>()
                .join(" || ', ' || ");
            format!(
                "(SELECT '{name}', {text}, count(*) FROM {name}{filter} GROUP BY {key} \
                 HAVING count(*) > 1 ORDER BY {key} LIMIT 1)",
                name = t.name,
                filter = filter(t),
            )
        })
        .collect();
    (!branches.is_empty()).then(|| branches.join("\nUNION ALL\n"))
}

/// What [`duplicate_keys`] finds for `table`, found in `rows` instead of in SQL: the smallest
/// value of its key that `rows` hold more than once (as the column shows it), and how many
/// times; `None` when every key is unique. For a key of one integer or timestamp column.
/// Keys in order (as the star build gives them) cost one pass and no memory; others are
/// sorted in a copy.
pub fn duplicate_key_in(
    table: &TableDef,
    rows: crate::model::Rows<'_>,
) -> crate::Result<Option<(String, u64)>> {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int64Type, TimeUnit};
    use rayon::slice::ParallelSliceMut;
    let unsupported = || {
        crate::Error::Schema(format!(
            "{}: only a key of one integer or timestamp column is checked outside SQL",
            table.name
        ))
    };
    let [key] = table.primary_key else {
        return Err(unsupported());
    };
    let column = rows.column(key)?.ok_or_else(unsupported)?;
    // As 64-bit integers: a timestamp's milliseconds are reinterpreted, not copied.
    let ints = match column.data_type() {
        DataType::Int32 | DataType::Int64 | DataType::Timestamp(TimeUnit::Millisecond, None) => {
            arrow::compute::cast(&column, &DataType::Int64)?
        }
        _ => return Err(unsupported()),
    };
    let values = ints.as_primitive::<Int64Type>().values();
    if values.windows(2).all(|w| w[0] < w[1]) {
        return Ok(None);
    }
    let mut sorted = values.to_vec();
    sorted.par_sort_unstable();
    let Some(run) = sorted.chunk_by(|a, b| a == b).find(|run| run.len() > 1) else {
        return Ok(None);
    };
    let row = values.iter().position(|v| *v == run[0]).unwrap_or(0);
    let shown = arrow::util::display::array_value_to_string(&column, row)?;
    Ok(Some((shown, run.len() as u64)))
}

/// `ALTER TABLE … ADD PRIMARY KEY` for `table`; `None` for a table that declares no key in
/// `dialect`.
pub fn add_primary_key(table: &TableDef, dialect: &Dialect) -> Option<String> {
    dialect.declares_key(table).then(|| {
        format!(
            "ALTER TABLE {} ADD PRIMARY KEY ({})",
            table.name,
            table.primary_key.join(", ")
        )
    })
}

fn create(table: &TableDef, dialect: &Dialect, keyed: bool, widths: &Widths) -> String {
    let mut cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let ty = if c.name == "songplay_id" && dialect.identity_songplays() {
                "BIGINT IDENTITY(0,1)".to_owned()
            } else {
                dialect.type_name(table, c, widths)
            };
            let null = if c.not_null { " NOT NULL" } else { "" };
            format!("    {} {ty}{null}", c.name)
        })
        .collect();
    if keyed && dialect.declares_key(table) {
        cols.push(format!(
            "    PRIMARY KEY ({})",
            table.primary_key.join(", ")
        ));
    }
    let mut sql = format!("CREATE TABLE {} (\n{}\n)", table.name, cols.join(",\n"));
    if let Dialect::Redshift(keys) = dialect {
        let (dist, sort) = keys.of(table.name);
        if let Some(d) = dist {
            sql += &format!("\nDISTSTYLE KEY DISTKEY ({d})");
        }
        if let Some(s) = sort {
            sql += &format!("\nSORTKEY ({s})");
        }
        // Redshift picks each column's encoding from its type and data, and changes it as the
        // data grows: said here so that no reader of the DDL wonders (docs/warehouse.md).
        sql += "\nENCODE AUTO";
    }
    sql
}

/// `DROP TABLE IF EXISTS` for `table`.
pub fn drop_table(table: &TableDef) -> String {
    format!("DROP TABLE IF EXISTS {}", table.name)
}

/// Drops and creates every table, in report order.
pub fn recreate_all(dialect: &Dialect) -> Vec<String> {
    SINK_TABLES
        .iter()
        .flat_map(|t| [drop_table(t), create_table(t, dialect)])
        .collect()
}

/// `sparkify tables create|drop`: drop and create every table, or drop every table, the run
/// history (`etl_runs`) included.
pub fn tables_sql(action: TablesAction, dialect: &Dialect) -> Vec<String> {
    match action {
        TablesAction::Create => {
            let mut out = recreate_all(dialect);
            for t in [&ETL_RUNS, &SCHEMA_DRIFT] {
                out.extend([drop_table(t), create_table(t, dialect)]);
            }
            out
        }
        TablesAction::Drop => SINK_TABLES
            .iter()
            .chain([&&ETL_RUNS, &&SCHEMA_DRIFT])
            .map(|t| drop_table(t))
            .collect(),
    }
}

/// An incremental load's tables: the staging tables, `load_errors` and `etl_files` created
/// if missing (rows are appended to them), the star tables created if missing (maintained)
/// or dropped and created (`rebuild`: built again over every staged row).
pub fn prepare_increment(dialect: &Dialect, rebuild: bool) -> Vec<String> {
    let mut out = prepare_appended(dialect, &Widths::default());
    out.extend(star_tables(dialect, &Widths::default(), !rebuild));
    out
}

/// The star tables created if missing (`keep`: an incremental load maintains them), else
/// dropped and created; text columns sized by `widths` ([`star_widths`]).
pub fn star_tables(dialect: &Dialect, widths: &Widths, keep: bool) -> Vec<String> {
    match keep {
        true => create_star_if_missing(dialect, widths),
        false => recreate_star(dialect, widths),
    }
}

/// The tables an incremental load appends to (every one but the star schema's) created if
/// missing, their text columns sized by `widths` (on Redshift), and given what a sink loaded
/// before the run history lacks.
pub fn prepare_appended(dialect: &Dialect, widths: &Widths) -> Vec<String> {
    let mut out: Vec<String> = SINK_TABLES
        .iter()
        .filter(|t| !is_star(t))
        .map(|t| create_table_if_missing_sized(t, dialect, widths))
        .collect();
    out.extend(upgrade(dialect));
    out.extend(staging_indexes(dialect));
    out
}

/// On PostgreSQL, what lets an incremental load's maintenance read the staged rows it needs
/// without reading every one, made by the first incremental load: each staging table's
/// `etl_file_id` (the rows of the files it adds), and the events' users with their times, sessions
/// and times (the rows of the changed keys); and the statistics that let the planner choose
/// them (a load may follow the last before autovacuum has looked). DuckDB and Redshift skip
/// blocks by their zone maps instead (rows are appended in file order), and build no index a
/// load must keep.
fn staging_indexes(dialect: &Dialect) -> Vec<String> {
    match dialect {
        Dialect::Postgres => STAGING_TABLES
            .iter()
            .map(|t| {
                format!(
                    "CREATE INDEX IF NOT EXISTS {0}_etl_file_id ON {0} (etl_file_id)",
                    t.name
                )
            })
            .chain(
                [
                    ("user_ts", "userId, ts"),
                    ("session", "sessionId"),
                    ("ts", "ts"),
                ]
                .map(|(name, columns)| {
                    format!(
                        "CREATE INDEX IF NOT EXISTS staging_events_{name} ON staging_events \
                             ({columns})"
                    )
                }),
            )
            .chain([
                "ANALYZE staging_events (etl_file_id, userId, ts, sessionId, itemInSession, page)"
                    .to_owned(),
                // Compiling a query costs more than the few rows a maintenance reads save.
                "SET LOCAL jit = off".to_owned(),
            ])
            .collect(),
        Dialect::DuckDb | Dialect::Redshift(_) => Vec::new(),
    }
}

/// Every table but the star schema's dropped and created, text columns sized by `widths`.
pub fn recreate_staged(dialect: &Dialect, widths: &Widths) -> Vec<String> {
    SINK_TABLES
        .iter()
        .filter(|t| !is_star(t))
        .flat_map(|t| [drop_table(t), create_table_sized(t, dialect, widths)])
        .collect()
}

/// The star tables dropped and created, text columns sized by `widths`
/// ([`star_widths`]).
pub fn recreate_star(dialect: &Dialect, widths: &Widths) -> Vec<String> {
    STAR_TABLES
        .iter()
        .flat_map(|t| [drop_table(t), create_table_sized(t, dialect, widths)])
        .collect()
}

fn is_star(table: &TableDef) -> bool {
    STAR_TABLES.iter().any(|s| s.name == table.name)
}

/// Columns renamed since a sink may have been loaded: `(table, old name, new name)`.
/// `load_errors.raw` was a Redshift reserved word ("Reserved words": RAW).
pub const RENAMED: &[(&str, &str, &str)] = &[("load_errors", "raw", "raw_text")];

/// The renamed columns ([`RENAMED`]) a sink still has under their old names, as `(table,
/// column)` rows; every sink answers it from `information_schema.columns`.
pub fn renamed_probe() -> String {
    let pairs: Vec<String> = RENAMED
        .iter()
        .map(|(t, old, _)| format!("(table_name = '{t}' AND column_name = '{old}')"))
        .collect();
    format!(
        "SELECT table_name, column_name FROM information_schema.columns \
         WHERE table_schema = current_schema() AND ({})",
        pairs.join(" OR ")
    )
}

/// The statements that give the columns `found` ([`renamed_probe`]'s rows) their new names
/// (the old one quoted: it may be a reserved word).
pub fn renames(found: &[Vec<Option<String>>]) -> Vec<String> {
    RENAMED
        .iter()
        .filter(|(t, old, _)| {
            found.iter().any(|r| {
                r.first().and_then(|v| v.as_deref()) == Some(*t)
                    && r.get(1).and_then(|v| v.as_deref()) == Some(*old)
            })
        })
        .map(|(t, old, new)| format!("ALTER TABLE {t} RENAME COLUMN \"{old}\" TO {new}"))
        .collect()
}

/// The columns a sink loaded before the run history lacks, added (DuckDB and PostgreSQL:
/// `ADD COLUMN IF NOT EXISTS`, which Redshift does not have): `run_id` of `load_errors` and
/// `etl_files`, NULL in the rows loaded before.
fn upgrade(dialect: &Dialect) -> Vec<String> {
    let text = Column {
        name: "run_id",
        ty: SqlType::Text,
        not_null: false,
        lineage: false,
        width: None,
    };
    match dialect {
        Dialect::Redshift(_) => Vec::new(),
        Dialect::DuckDb | Dialect::Postgres => [&LOAD_ERRORS, &ETL_FILES]
            .iter()
            .map(|t| {
                format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS run_id {}",
                    t.name,
                    dialect.fixed_type_name(&text)
                )
            })
            .collect(),
    }
}

/// The conditions that make an event a play.
const PLAYS: &str =
    "page = 'NextSong' AND ts IS NOT NULL AND sessionId IS NOT NULL AND itemInSession IS NOT NULL";

/// The statements that fill the star schema from `staging_events` and `staging_songs`; the
/// star tables must exist and be empty.
pub fn transforms(dialect: &Dialect, mode: SongplaysMode) -> Vec<String> {
    star_inserts(dialect, mode, Scope::All)
}

/// Which rows of the star the inserts make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every row: the tables are empty.
    All,
    /// The rows of the keys an incremental load changed ([`CHANGED_KEYS`]), whose old rows
    /// are gone.
    Changed,
}

/// The staging rows an incremental load removed or added: their users, sessions and times
/// (a temporary table, gone at the end of the load).
pub const CHANGED_EVENTS: &str = "changed_events";
/// The staging songs an incremental load removed or added: their ids, titles and artists.
pub const CHANGED_SONGS: &str = "changed_songs";

/// Per star table, the temporary table of the keys whose rows an incremental load makes
/// again, its column, and the query that fills it: the keys of the changed rows, and every
/// key when the star table is empty (one this load created, say). `ft_songplays` is made
/// again by session: a play's song may move when a song of its title and artist came or
/// went. (`dm_users_history` shares `dm_users`' users.)
pub const CHANGED_KEYS: [(&str, &str, &str); 5] = [
    (
        "changed_users",
        "userId",
        "SELECT userId FROM changed_events WHERE userId IS NOT NULL
UNION
SELECT userId FROM staging_events WHERE userId IS NOT NULL
AND (NOT EXISTS (SELECT 1 FROM dm_users) OR NOT EXISTS (SELECT 1 FROM dm_users_history))",
    ),
    (
        "changed_times",
        "ts",
        "SELECT ts FROM changed_events WHERE ts IS NOT NULL
UNION
SELECT ts FROM staging_events WHERE ts IS NOT NULL AND NOT EXISTS (SELECT 1 FROM dm_time)",
    ),
    (
        "changed_sessions",
        "sessionId",
        "SELECT sessionId FROM changed_events WHERE sessionId IS NOT NULL
UNION
SELECT e.sessionId FROM staging_events AS e
JOIN changed_songs AS s ON s.title = e.song AND s.artist_name = e.artist
WHERE e.page = 'NextSong' AND e.sessionId IS NOT NULL AND EXISTS (SELECT 1 FROM changed_songs)
UNION
SELECT sessionId FROM staging_events WHERE sessionId IS NOT NULL
AND NOT EXISTS (SELECT 1 FROM ft_songplays)",
    ),
    (
        "changed_song_ids",
        "song_id",
        "SELECT song_id FROM changed_songs WHERE song_id IS NOT NULL
UNION
SELECT song_id FROM staging_songs WHERE song_id IS NOT NULL
AND NOT EXISTS (SELECT 1 FROM dm_songs)",
    ),
    (
        "changed_artist_ids",
        "artist_id",
        "SELECT artist_id FROM changed_songs WHERE artist_id IS NOT NULL
UNION
SELECT artist_id FROM staging_songs WHERE artist_id IS NOT NULL
AND NOT EXISTS (SELECT 1 FROM dm_artists)",
    ),
];

/// `AND key IN (the changed keys)` ([`Scope::Changed`], the keys of `CHANGED_KEYS[at]`);
/// nothing for [`Scope::All`].
fn changed(scope: Scope, key: &str, at: usize) -> String {
    match scope {
        Scope::All => String::new(),
        Scope::Changed => {
            let (table, column, _) = CHANGED_KEYS[at];
            format!(" AND {key} IN (SELECT {column} FROM {table})")
        }
    }
}

/// `dm_users`' insert: each user's first event at their latest time, for the users that
/// `only` keeps (`AND …`, or nothing for every user), ranked over the staged events or, given
/// `events` (a table of some of them, or a subquery in parentheses), over those. Only a
/// user's events at their latest time can come first: those are ranked (a user with no time
/// at all: every event, each NULL time matching the stand-in).
fn users_insert(c: &str, only: &str, events: Option<&str>) -> String {
    let (from, from_last) = match events {
        None => ("staging_events".to_owned(), "staging_events".to_owned()),
        Some(events) => (events.to_owned(), format!("{events} AS u")),
    };
    format!(
        "INSERT INTO dm_users (user_id, first_name, last_name, gender, level)
SELECT userId, firstName, lastName, gender, level
FROM (
    SELECT e.userId, e.firstName, e.lastName, e.gender, e.level,
           ROW_NUMBER() OVER (
               PARTITION BY e.userId
               ORDER BY e.ts DESC NULLS LAST, e.itemInSession DESC NULLS LAST, e.sessionId DESC NULLS LAST,
                        e.level{c} ASC NULLS LAST, e.firstName{c} ASC NULLS LAST,
                        e.lastName{c} ASC NULLS LAST, e.gender{c} ASC NULLS LAST
           ) AS rn
    FROM {from} AS e
    JOIN (
        SELECT userId, MAX(ts) AS ts
        FROM {from_last}
        WHERE userId IS NOT NULL{only}
        GROUP BY userId
    ) AS last ON last.userId = e.userId
             AND COALESCE(e.ts, {NO_TIME}) = COALESCE(last.ts, {NO_TIME})
) AS latest
WHERE rn = 1"
    )
}

fn star_inserts(dialect: &Dialect, mode: SongplaysMode, scope: Scope) -> Vec<String> {
    let c = dialect.collate();
    let time_changed = changed(scope, "ts", 1);
    let plays_changed = changed(scope, "sessionId", 2);
    let songs_changed = changed(scope, "song_id", 3);
    let artists_changed = changed(scope, "artist_id", 4);
    let users = match scope {
        Scope::All => users_insert(c, "", None),
        // The other appended users' rows are made from their events from the first changed
        // one on ([`maintain_star`]).
        Scope::Changed => users_insert(
            c,
            &format!(" AND userId IN (SELECT userId FROM {REBUILT_USERS})"),
            None,
        ),
    };
    // Maintained, a user with a run before their first changed event goes on from it
    // ([`maintain_star`]); the others' histories are made again.
    let history_changed = match scope {
        Scope::All => String::new(),
        Scope::Changed => {
            format!(" AND userId IN (SELECT userId FROM {REBUILT_HISTORIES})")
        }
    };
    let history = history_insert(
        c,
        &format!(
            "(SELECT userId, level, ts, itemInSession, sessionId FROM staging_events
      WHERE userId IS NOT NULL AND level IS NOT NULL AND ts IS NOT NULL{history_changed}) AS events"
        ),
    );
    let songs = format!(
        "INSERT INTO dm_songs (song_id, title, artist_id, year, duration)
SELECT song_id, title, artist_id, year, duration
FROM (
    SELECT song_id, title, artist_id, year, duration,
           ROW_NUMBER() OVER (
               PARTITION BY song_id
               ORDER BY CASE WHEN year IS NOT NULL AND year <> 0 THEN 0 ELSE 1 END,
                        duration DESC NULLS LAST, artist_id{c} ASC NULLS LAST,
                        title{c} ASC NULLS LAST, year DESC NULLS LAST
           ) AS rn
    FROM staging_songs
    WHERE song_id IS NOT NULL{songs_changed}
) AS best
WHERE rn = 1"
    );
    let artists = format!(
        "INSERT INTO dm_artists (artist_id, name, location, latitude, longitude)
SELECT artist_id, artist_name, artist_location, artist_latitude, artist_longitude
FROM (
    SELECT artist_id, artist_name, artist_location, artist_latitude, artist_longitude,
           ROW_NUMBER() OVER (
               PARTITION BY artist_id
               ORDER BY CASE WHEN artist_latitude IS NOT NULL THEN 0 ELSE 1 END,
                        CASE WHEN artist_location IS NOT NULL AND artist_location <> '' THEN 0 ELSE 1 END,
                        LENGTH(artist_name) ASC NULLS LAST, artist_name{c} ASC NULLS LAST,
                        song_id{c} ASC NULLS LAST, artist_location{c} ASC NULLS LAST,
                        artist_latitude ASC NULLS LAST, artist_longitude ASC NULLS LAST
           ) AS rn
    FROM staging_songs
    WHERE artist_id IS NOT NULL{artists_changed}
) AS best
WHERE rn = 1"
    );
    let part = |p: &str| format!("CAST(EXTRACT({p} FROM start_time) AS INTEGER)");
    let time = format!(
        "INSERT INTO dm_time (start_time, hour, day, week, month, year, weekday)
SELECT start_time, {}, {}, {}, {}, {},
       CAST(CASE EXTRACT(dow FROM start_time) WHEN 0 THEN 7 ELSE EXTRACT(dow FROM start_time) END AS INTEGER)
FROM (SELECT DISTINCT ts AS start_time FROM staging_events WHERE {PLAYS}{time_changed}) AS plays",
        part("hour"),
        part("day"),
        part("week"),
        part("month"),
        part("year"),
    );
    // Numbered from 0, or on from the largest number kept when plays are added.
    let first_id = match scope {
        Scope::All => String::new(),
        Scope::Changed => "(SELECT COALESCE(MAX(songplay_id) + 1, 0) FROM ft_songplays) + ".into(),
    };
    let (id_col, id_val) = if dialect.identity_songplays() {
        (String::new(), String::new())
    } else {
        (
            "songplay_id, ".to_owned(),
            format!(
                "{first_id}ROW_NUMBER() OVER (ORDER BY p.ts, p.sessionId, p.itemInSession) - 1,\n       "
            ),
        )
    };
    let matched_only = match mode {
        SongplaysMode::Matched => " AND m.rn IS NOT NULL",
        SongplaysMode::All => "",
    };
    let songplays = format!(
        "INSERT INTO ft_songplays ({id_col}start_time, user_id, level, song_id, artist_id, session_id, item_in_session, location, user_agent)
WITH plays AS (
    SELECT ts, userId, level, song, artist, length, sessionId, itemInSession, location, userAgent,
           ROW_NUMBER() OVER (
               PARTITION BY sessionId, itemInSession
               ORDER BY ts ASC NULLS LAST, userId ASC NULLS LAST, level{c} ASC NULLS LAST,
                        location{c} ASC NULLS LAST, userAgent{c} ASC NULLS LAST, song{c} ASC NULLS LAST,
                        artist{c} ASC NULLS LAST, length ASC NULLS LAST
           ) AS rn
    FROM staging_events
    WHERE {PLAYS}{plays_changed}
),
matched AS (
    SELECT p.sessionId, p.itemInSession, s.song_id, s.artist_id,
           ROW_NUMBER() OVER (
               PARTITION BY p.sessionId, p.itemInSession
               ORDER BY ABS(s.duration - p.length) ASC NULLS LAST, s.song_id{c} ASC NULLS LAST,
                        s.artist_id{c} ASC NULLS LAST
           ) AS rn
    FROM plays AS p
    JOIN staging_songs AS s ON s.title = p.song AND s.artist_name = p.artist
    WHERE p.rn = 1
)
SELECT {id_val}p.ts, p.userId, p.level, m.song_id, m.artist_id, p.sessionId, p.itemInSession, p.location,
       CASE WHEN LENGTH(p.userAgent) >= 2 AND LEFT(p.userAgent, 1) = '\"' AND RIGHT(p.userAgent, 1) = '\"'
            THEN SUBSTRING(p.userAgent, 2, LENGTH(p.userAgent) - 2)
            ELSE p.userAgent END
FROM plays AS p
LEFT JOIN matched AS m ON m.sessionId = p.sessionId AND m.itemInSession = p.itemInSession AND m.rn = 1
WHERE p.rn = 1{matched_only}"
    );
    vec![songplays, users, songs, artists, time, history]
}

/// `dm_users_history`'s rows of `events` (a FROM item of a user's events with their
/// `userId`, `level`, `ts`, `itemInSession` and `sessionId`): a run starts where the level
/// differs from the previous event's, and lasts until the next run starts.
fn history_insert(c: &str, events: &str) -> String {
    format!(
        "INSERT INTO dm_users_history (user_id, level, valid_from, valid_to, is_current)
SELECT userId, level, ts,
       LEAD(ts) OVER (PARTITION BY userId ORDER BY {order}),
       LEAD(ts) OVER (PARTITION BY userId ORDER BY {order}) IS NULL
FROM (
    SELECT userId, level, ts, itemInSession, sessionId,
           LAG(level) OVER (PARTITION BY userId ORDER BY {order}) AS previous
    FROM {events}
) AS ordered
WHERE previous IS NULL OR previous <> level",
        order = history_order(c),
    )
}

/// The users whose history an incremental load goes on from a run rather than makes again:
/// a run in their history that starts before their first changed event (added with a level
/// and a time, or removed with a time), the last such, at whose start no event has another
/// level. Their runs before it stand (no event before the first changed one came or went);
/// from it on, they are made from its level and start and their events from the first
/// changed one on (the run's own events before that one have its level, and no run starts
/// among them). With no event removed, their latest events are among those too. With the
/// run's level and start, and the first changed event's time (`first_ts`).
pub const APPENDED_USERS: &str = "appended_users";

/// The appended users' events from their first changed one on (a temporary table, gone at
/// the end of the load).
pub const APPENDED_EVENTS: &str = "appended_events";

/// The changed users whose `dm_users` row is made again from all their events: those not
/// appended, and those with an event removed, whose latest events may be gone (a temporary
/// table, gone at the end of the load).
pub const REBUILT_USERS: &str = "rebuilt_users";

/// The changed users not appended: their rows of `dm_users_history` are made again from all
/// their events (a temporary table, gone at the end of the load).
pub const REBUILT_HISTORIES: &str = "rebuilt_histories";

/// A time no event has, standing in for NULL where times are compared for equality.
const NO_TIME: &str = "TIMESTAMP '0001-01-01 00:00:00'";

/// SPEC's order of a user's events in the level history: ts, itemInSession, sessionId,
/// ascending (NULLs last), then level by bytes, so that it is total.
fn history_order(c: &str) -> String {
    format!(
        "ts ASC NULLS LAST, itemInSession ASC NULLS LAST, sessionId ASC NULLS LAST, \
         level{c} ASC NULLS LAST"
    )
}

/// The star tables created if missing (an incremental load keeps them), text columns sized
/// by `widths` ([`star_widths`]).
pub fn create_star_if_missing(dialect: &Dialect, widths: &Widths) -> Vec<String> {
    STAR_TABLES
        .iter()
        .map(|t| create_table_if_missing_sized(t, dialect, widths))
        .collect()
}

/// The staged rows of the files an incremental load removes (`events` and `songs`: their
/// `file_id`s), noted before they are deleted in [`CHANGED_EVENTS`] and [`CHANGED_SONGS`]:
/// temporary tables of the load's own connection, which no other session sees and
/// [`maintain_star`] drops before the COMMIT. At most 1,000 ids a statement.
pub fn note_removed(events: &[String], songs: &[String]) -> Vec<String> {
    let mut out = vec![
        format!(
            "CREATE TEMPORARY TABLE {CHANGED_EVENTS} AS SELECT {EVENT_KEYS}, TRUE AS removed \
             FROM staging_events WHERE 1 = 0"
        ),
        format!(
            "CREATE TEMPORARY TABLE {CHANGED_SONGS} AS SELECT {SONG_KEYS} FROM staging_songs \
             WHERE 1 = 0"
        ),
    ];
    for (table, keys, from, ids) in [
        (CHANGED_EVENTS, REMOVED_EVENT_KEYS, "staging_events", events),
        (CHANGED_SONGS, SONG_KEYS, "staging_songs", songs),
    ] {
        out.extend(ids.chunks(1000).map(|chunk| {
            format!(
                "INSERT INTO {table} SELECT {keys} FROM {from} WHERE etl_file_id IN ({})",
                chunk.join(", ")
            )
        }));
    }
    out
}

/// What the star's rows depend on in a staging event: its user, session and time.
const EVENT_KEYS: &str = "userId, sessionId, ts";
/// [`EVENT_KEYS`] of a removed event, marked so.
const REMOVED_EVENT_KEYS: &str = "userId, sessionId, ts, TRUE";
/// What the star's rows depend on in a staging song: its ids, title and artist's name.
const SONG_KEYS: &str = "song_id, artist_id, title, artist_name";

/// An incremental load's star maintenance, once its rows are staged: the rows of the files
/// it added (`etl_file_id >= first_new_id`) noted beside those removed ([`note_removed`]),
/// the sessions to rebuild found, then each star table's rows of the changed keys deleted
/// and made again from every staged row of those keys, by the same orders as
/// [`transforms`]; so the star equals a full load's of the same files (but for
/// `songplay_id`, which numbers added plays on from the largest kept). The temporary tables
/// are dropped at the end.
pub fn maintain_star(dialect: &Dialect, mode: SongplaysMode, first_new_id: i32) -> Vec<String> {
    let mut out = vec![
        format!(
            "INSERT INTO {CHANGED_EVENTS} SELECT {EVENT_KEYS}, FALSE FROM staging_events \
             WHERE etl_file_id >= {first_new_id}"
        ),
        format!(
            "INSERT INTO {CHANGED_SONGS} SELECT {SONG_KEYS} FROM staging_songs \
             WHERE etl_file_id >= {first_new_id}"
        ),
    ];
    out.extend(
        CHANGED_KEYS
            .iter()
            .map(|(table, _, fill)| format!("CREATE TEMPORARY TABLE {table} AS\n{fill}")),
    );
    // Read before their current rows go.
    out.push(format!(
        "CREATE TEMPORARY TABLE {APPENDED_USERS} AS
SELECT h.user_id AS userId, h.level, h.valid_from, added.first_ts
FROM dm_users_history AS h
JOIN (
    SELECT userId, MIN(ts) AS first_ts FROM (
        SELECT userId, ts FROM staging_events
        WHERE etl_file_id >= {first_new_id} AND userId IS NOT NULL AND level IS NOT NULL AND ts IS NOT NULL
        UNION ALL
        SELECT userId, ts FROM {CHANGED_EVENTS}
        WHERE removed AND userId IS NOT NULL AND ts IS NOT NULL
    ) AS changed
    GROUP BY userId
) AS added ON added.userId = h.user_id
WHERE h.valid_from < added.first_ts
  AND NOT EXISTS (
      SELECT 1 FROM dm_users_history AS later
      WHERE later.user_id = h.user_id AND later.valid_from > h.valid_from
        AND later.valid_from < added.first_ts
  )
  AND NOT EXISTS (
      SELECT 1 FROM staging_events AS tie
      WHERE tie.userId = h.user_id AND tie.ts = h.valid_from AND tie.level <> h.level
  )"
    ));
    out.extend([
        format!(
            "CREATE TEMPORARY TABLE {REBUILT_HISTORIES} AS
SELECT userId FROM changed_users WHERE userId NOT IN (SELECT userId FROM {APPENDED_USERS})"
        ),
        format!(
            "CREATE TEMPORARY TABLE {REBUILT_USERS} AS
SELECT userId FROM {REBUILT_HISTORIES}
UNION
SELECT userId FROM {CHANGED_EVENTS} WHERE removed AND userId IS NOT NULL"
        ),
    ]);
    if *dialect == Dialect::Postgres {
        // How many rows the load's keys are, for the planner to read the staged rows of few
        // by the indexes ([`staging_indexes`]).
        out.extend(
            CHANGED_KEYS
                .iter()
                .map(|(table, _, _)| *table)
                .chain([APPENDED_USERS, REBUILT_HISTORIES, REBUILT_USERS])
                .map(|t| format!("ANALYZE {t}")),
        );
    }
    out.extend(
        [
            "DELETE FROM ft_songplays WHERE session_id IN (SELECT sessionId FROM changed_sessions)",
            "DELETE FROM dm_users WHERE user_id IN (SELECT userId FROM changed_users)",
            "DELETE FROM dm_users_history WHERE user_id IN (SELECT userId FROM rebuilt_histories)",
            "DELETE FROM dm_users_history USING appended_users AS a \
             WHERE dm_users_history.user_id = a.userId AND dm_users_history.valid_from >= a.valid_from",
            "DELETE FROM dm_songs WHERE song_id IN (SELECT song_id FROM changed_song_ids)",
            "DELETE FROM dm_artists WHERE artist_id IN (SELECT artist_id FROM changed_artist_ids)",
            "DELETE FROM dm_time WHERE start_time IN (SELECT ts FROM changed_times)",
        ]
        .map(str::to_owned),
    );
    out.extend(star_inserts(dialect, mode, Scope::Changed));
    // The appended users' events from their first changed one on: the events their history
    // goes on with (the run's own events before that one have its level: no run starts
    // among them), and, with no event removed, all their latest events.
    let appended_events = format!(
        "CREATE TEMPORARY TABLE {APPENDED_EVENTS} AS
SELECT e.userId, e.firstName, e.lastName, e.gender, e.level, e.ts, e.itemInSession, e.sessionId
FROM staging_events AS e
JOIN {APPENDED_USERS} AS a ON a.userId = e.userId AND e.ts >= a.first_ts"
    );
    match dialect {
        // The planner takes a range join's rows for a third of the table's and would read
        // all of it; the index on users and times reads each user's few.
        Dialect::Postgres => out.extend([
            "SET LOCAL enable_seqscan = off".to_owned(),
            appended_events,
            "SET LOCAL enable_seqscan = on".to_owned(),
        ]),
        Dialect::DuckDb | Dialect::Redshift(_) => out.push(appended_events),
    }
    out.push(users_insert(
        dialect.collate(),
        &format!(" AND userId NOT IN (SELECT userId FROM {REBUILT_USERS})"),
        Some(APPENDED_EVENTS),
    ));
    out.push(history_insert(
        dialect.collate(),
        &format!(
            "(SELECT userId, level, ts, itemInSession, sessionId FROM {APPENDED_EVENTS}
      WHERE level IS NOT NULL
      UNION ALL
      SELECT userId, level, valid_from, NULL, NULL FROM {APPENDED_USERS}) AS events"
        ),
    ));
    out
}

/// The temporary tables of [`maintain_star`] dropped, once the load is done with them.
pub fn drop_maintenance_tables() -> Vec<String> {
    CHANGED_KEYS
        .iter()
        .map(|(table, _, _)| *table)
        .chain([
            APPENDED_EVENTS,
            REBUILT_USERS,
            REBUILT_HISTORIES,
            APPENDED_USERS,
            CHANGED_EVENTS,
            CHANGED_SONGS,
        ])
        .map(|t| format!("DROP TABLE {t}"))
        .collect()
}

/// `s` as a SQL string literal: quotes doubled; on Redshift, which reads a backslash as an
/// escape in string literals, backslashes doubled too. (PostgreSQL, with its default
/// `standard_conforming_strings`, and DuckDB read backslashes literally.)
pub fn literal(s: &str, dialect: &Dialect) -> String {
    let s = s.replace('\'', "''");
    match dialect {
        Dialect::Redshift(_) => format!("'{}'", s.replace('\\', "\\\\")),
        Dialect::DuckDb | Dialect::Postgres => format!("'{s}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_column_gets_the_step_above_its_longest_value_in_bytes() {
        assert_eq!(
            [0, 16, 17, 31, 64, 65, 4000, 65_535, 70_000].map(varchar_width),
            [16, 16, 64, 64, 64, 256, 4096, 65_535, 65_535]
        );
        // Thirty characters, one of them two bytes: 31 bytes.
        let name = format!("{}é", "a".repeat(29));
        let batch = arrow::array::RecordBatch::try_from_iter([(
            "firstName",
            std::sync::Arc::new(arrow::array::StringArray::from(vec![
                Some(name.as_str()),
                None,
            ])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        let mut widths = Widths::default();
        widths.observe(&crate::table::STAGING_EVENTS, &batch);
        assert_eq!(widths.get("staging_events", "firstName"), Some(31));
        let star = star_widths(&widths);
        let redshift = Dialect::Redshift(RedshiftKeys::default());
        let ddl = create_table_sized(&DM_USERS, &redshift, &star);
        assert!(ddl.contains("first_name VARCHAR(64),"), "{ddl}");
        // A column no value was seen in is as narrow as can be; a fixed one keeps its width.
        assert!(ddl.contains("last_name VARCHAR(16),"), "{ddl}");
        assert!(ddl.ends_with("ENCODE AUTO"), "{ddl}");
        let files = create_table(&crate::table::ETL_FILES, &redshift);
        assert!(files.contains("checksum VARCHAR(32) NOT NULL"), "{files}");
        assert!(!files.contains("65535"), "{files}");
    }

    #[test]
    fn every_text_column_of_the_star_has_a_source_in_staging() {
        use crate::table::{STAGING_EVENTS, STAGING_SONGS};
        for table in STAR_TABLES {
            for column in table.columns.iter().filter(|c| c.ty == SqlType::Text) {
                let source = STAR_TEXT_SOURCES
                    .iter()
                    .find(|(t, c, _, _)| *t == table.name && *c == column.name);
                let Some((_, _, from, name)) = source else {
                    panic!("{}.{} has no source", table.name, column.name);
                };
                let staging = [&STAGING_EVENTS, &STAGING_SONGS]
                    .into_iter()
                    .find(|t| t.name == *from)
                    .unwrap();
                assert!(
                    staging_text_columns(staging).contains(name),
                    "{from}.{name}"
                );
            }
        }
    }
    use crate::table::DM_USERS;

    #[test]
    fn a_key_held_twice_is_found_on_the_rows_in_order_or_not() {
        #![allow(clippy::unwrap_used)] // a test may panic on what it does not expect
        use crate::model::{Rows, Times};
        use arrow::array::{ArrayRef, Int32Array, RecordBatch, TimestampMillisecondArray};
        use std::sync::Arc;
        let times = |ms: &[i64]| {
            let column: ArrayRef = Arc::new(TimestampMillisecondArray::from(ms.to_vec()));
            RecordBatch::try_from_iter([("start_time", column)]).unwrap()
        };
        // In a batch, and as dm_time's times made as they are asked for: the same answer.
        let found = |ms: &[i64]| {
            let in_batch = duplicate_key_in(&DM_TIME, Rows::Batch(&times(ms))).unwrap();
            let made = Times::new(ms.to_vec());
            assert_eq!(
                duplicate_key_in(&DM_TIME, Rows::Times(&made)).unwrap(),
                in_batch
            );
            in_batch
        };
        assert_eq!(found(&[]), None);
        assert_eq!(found(&[1, 2, 3]), None);
        assert_eq!(found(&[3, 1, 2]), None);
        // The smallest key held more than once, wherever it is, and how many times.
        assert_eq!(
            found(&[9, 1_541_000_000_000, 5, 9, 1_541_000_000_000, 9]),
            Some(("1970-01-01T00:00:00.009".to_owned(), 3))
        );
        assert_eq!(
            found(&[1, 2, 2, 3]),
            Some(("1970-01-01T00:00:00.002".to_owned(), 2))
        );
        let ids: ArrayRef = Arc::new(Int32Array::from(vec![7, 3, 7]));
        let users = RecordBatch::try_from_iter([("user_id", ids)]).unwrap();
        assert_eq!(
            duplicate_key_in(&DM_USERS, Rows::Batch(&users)).unwrap(),
            Some(("7".to_owned(), 2))
        );
        // A key this cannot read is an error, not a pass.
        assert!(duplicate_key_in(&DM_USERS, Rows::Batch(&times(&[1]))).is_err());
    }

    #[test]
    fn redshift_ddl_has_the_seed_keys_and_identity() {
        let d = Dialect::Redshift(RedshiftKeys::default());
        let sql = create_table(&FT_SONGPLAYS, &d);
        assert!(
            sql.contains("songplay_id BIGINT IDENTITY(0,1) NOT NULL"),
            "{sql}"
        );
        assert!(
            sql.ends_with("DISTSTYLE KEY DISTKEY (song_id)\nSORTKEY (song_id)\nENCODE AUTO"),
            "{sql}"
        );
        assert!(create_table(&DM_USERS, &Dialect::Postgres).contains("first_name TEXT"));
    }

    #[test]
    fn a_key_added_after_the_rows_is_the_key_the_table_declares() {
        let keyed = create_table(&DM_USERS, &Dialect::DuckDb);
        let unkeyed = create_table_unkeyed(&DM_USERS, &Dialect::DuckDb);
        assert_eq!(keyed.replace(",\n    PRIMARY KEY (user_id)", ""), unkeyed);
        assert_eq!(
            add_primary_key(&DM_USERS, &Dialect::DuckDb).unwrap(),
            "ALTER TABLE dm_users ADD PRIMARY KEY (user_id)"
        );
        assert_eq!(
            duplicate_keys(&[&DM_USERS, &crate::table::STAGING_EVENTS, &FT_SONGPLAYS]).unwrap(),
            "(SELECT 'dm_users', CAST(user_id AS VARCHAR), count(*) FROM dm_users \
             GROUP BY user_id HAVING count(*) > 1 ORDER BY user_id LIMIT 1)\n\
             UNION ALL\n\
             (SELECT 'ft_songplays', CAST(songplay_id AS VARCHAR), count(*) FROM ft_songplays \
             GROUP BY songplay_id HAVING count(*) > 1 ORDER BY songplay_id LIMIT 1)"
        );
        assert!(add_primary_key(&crate::table::STAGING_EVENTS, &Dialect::DuckDb).is_none());
        assert!(duplicate_keys(&[&crate::table::STAGING_EVENTS]).is_none());
    }

    #[test]
    fn duckdb_declares_no_key_for_the_tables_that_grow_with_the_plays() {
        for table in [&FT_SONGPLAYS, &DM_TIME] {
            let key = format!("PRIMARY KEY ({})", table.primary_key.join(", "));
            assert!(!create_table(table, &Dialect::DuckDb).contains(&key));
            assert!(add_primary_key(table, &Dialect::DuckDb).is_none());
            // Still checked at every load, and declared by the warehouses.
            assert!(duplicate_keys(&[table]).is_some());
            assert!(create_table(table, &Dialect::Postgres).contains(&key));
        }
        let declared: Vec<&str> = SINK_TABLES
            .iter()
            .filter(|t| Dialect::DuckDb.declares_key(t))
            .map(|t| t.name)
            .collect();
        assert_eq!(
            declared,
            ["dm_users", "dm_songs", "dm_artists", "etl_files"]
        );
    }

    #[test]
    fn literals_double_quotes() {
        let rs = Dialect::Redshift(RedshiftKeys::default());
        assert_eq!(
            literal("arn:aws:iam::1:role/it's", &rs),
            "'arn:aws:iam::1:role/it''s'"
        );
        assert_eq!(literal(r"a\'b", &rs), r"'a\\''b'");
        assert_eq!(literal(r"a\'b", &Dialect::Postgres), r"'a\''b'");
    }
}
