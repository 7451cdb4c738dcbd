//! The tables every sink writes: names, columns, types, keys. One definition serves the Arrow
//! schemas of the core and the DDL of every SQL sink, so the two cannot drift apart.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A column's type in the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// Text of any length (`VARCHAR`; Redshift's `VARCHAR(MAX)` where a sink needs a size).
    Text,
    /// 32-bit signed integer.
    Integer,
    /// 64-bit signed integer.
    BigInt,
    /// 64-bit float.
    Double,
    /// A timestamp without time zone, kept to the millisecond (UTC by convention).
    Timestamp,
    /// True or false.
    Boolean,
}

impl SqlType {
    /// The Arrow type the core builds this column with.
    pub fn arrow_type(self) -> DataType {
        match self {
            SqlType::Text => DataType::Utf8,
            SqlType::Integer => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Double => DataType::Float64,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            SqlType::Boolean => DataType::Boolean,
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: SqlType,
    pub not_null: bool,
    /// Set by the run, not read from the input: the staging tables' `etl_file_id`.
    pub lineage: bool,
    /// A text column of a fixed width: the most bytes its values take (Redshift's
    /// `VARCHAR(n)` counts bytes). `None`: sized from the data a load holds
    /// (`sql::Widths` of sparkify-model).
    pub width: Option<u32>,
}

/// One table: its name, columns in order, and primary key.
#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub primary_key: &'static [&'static str],
}

impl TableDef {
    /// The Arrow schema of the table. Nullability is left open in Arrow (NOT NULL is
    /// enforced by the warehouse's DDL), so that batches from every stage share one schema.
    pub fn schema(&self) -> SchemaRef {
        arrow_schema(self.columns.iter())
    }

    /// The Arrow schema the reader decodes the input into: the table's columns less the
    /// ones a run sets itself ([`Column::lineage`]).
    pub fn input_schema(&self) -> SchemaRef {
        arrow_schema(self.columns.iter().filter(|c| !c.lineage))
    }

    /// `value` as `column` keeps it: cut at the column's width ([`Column::width`]), on a
    /// character boundary.
    pub fn fit<'a>(&self, column: &str, value: &'a str) -> &'a str {
        let width = self
            .columns
            .iter()
            .find(|c| c.name == column)
            .and_then(|c| c.width)
            .map_or(usize::MAX, |w| w as usize);
        if value.len() <= width {
            return value;
        }
        let mut cut = width;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        &value[..cut]
    }

    /// The index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// The Arrow schema of `columns`, each nullable (see [`TableDef::schema`]).
fn arrow_schema<'a>(columns: impl Iterator<Item = &'a Column>) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .map(|c| Field::new(c.name, c.ty.arrow_type(), true))
            .collect::<Vec<_>>(),
    ))
}

const fn col(name: &'static str, ty: SqlType) -> Column {
    Column {
        name,
        ty,
        not_null: false,
        lineage: false,
        width: None,
    }
}

const fn req(name: &'static str, ty: SqlType) -> Column {
    Column {
        name,
        ty,
        not_null: true,
        lineage: false,
        width: None,
    }
}

/// A text column of a fixed width in bytes (see [`Column::width`]).
const fn text(name: &'static str, width: u32, not_null: bool) -> Column {
    Column {
        name,
        ty: SqlType::Text,
        not_null,
        lineage: false,
        width: Some(width),
    }
}

/// Bytes of a file's path or an S3 URL: Linux's `PATH_MAX`, and more than an S3 URL takes
/// (a 63-byte bucket and a 1,024-byte key).
pub const PATH_BYTES: u32 = 4096;
/// Bytes of a field name `schema_drift` keeps: a longer one is cut.
pub const FIELD_BYTES: u32 = 1024;
/// Bytes of the command line `etl_runs` keeps: a longer one (a shell's glob expanded to
/// thousands of files) is cut.
pub const COMMAND_BYTES: u32 = 8192;
/// Bytes of a run id (`history::RunStamp` of sparkify-model): 25 and a process id.
pub const RUN_ID_BYTES: u32 = 64;

/// The column of a staging table that names the input file of each row: `etl_files.file_id`.
/// It lets an incremental load replace one file's rows. NULL in rows Redshift copied from the
/// JSON itself (no file of the run is known for them).
pub const ETL_FILE_ID: Column = Column {
    name: "etl_file_id",
    ty: SqlType::Integer,
    not_null: false,
    lineage: true,
    width: None,
};

use SqlType::{BigInt, Boolean, Double, Integer, Text, Timestamp};

/// Every valid event of every page, columns named as the JSON keys.
pub const STAGING_EVENTS: TableDef = TableDef {
    name: "staging_events",
    columns: &[
        col("artist", Text),
        col("auth", Text),
        col("firstName", Text),
        col("gender", Text),
        col("itemInSession", Integer),
        col("lastName", Text),
        col("length", Double),
        col("level", Text),
        col("location", Text),
        col("method", Text),
        col("page", Text),
        col("registration", Double),
        col("sessionId", Integer),
        col("song", Text),
        col("status", Integer),
        col("ts", Timestamp),
        col("userAgent", Text),
        col("userId", Integer),
        ETL_FILE_ID,
    ],
    primary_key: &[],
};

/// Every valid song record, columns named as the JSON keys.
pub const STAGING_SONGS: TableDef = TableDef {
    name: "staging_songs",
    columns: &[
        col("num_songs", Integer),
        col("artist_id", Text),
        col("artist_latitude", Double),
        col("artist_longitude", Double),
        col("artist_location", Text),
        col("artist_name", Text),
        col("song_id", Text),
        col("title", Text),
        col("duration", Double),
        col("year", Integer),
        ETL_FILE_ID,
    ],
    primary_key: &[],
};

pub const FT_SONGPLAYS: TableDef = TableDef {
    name: "ft_songplays",
    columns: &[
        req("songplay_id", BigInt),
        req("start_time", Timestamp),
        col("user_id", Integer),
        col("level", Text),
        col("song_id", Text),
        col("artist_id", Text),
        req("session_id", Integer),
        req("item_in_session", Integer),
        col("location", Text),
        col("user_agent", Text),
    ],
    primary_key: &["songplay_id"],
};

pub const DM_USERS: TableDef = TableDef {
    name: "dm_users",
    columns: &[
        req("user_id", Integer),
        col("first_name", Text),
        col("last_name", Text),
        col("gender", Text),
        col("level", Text),
    ],
    primary_key: &["user_id"],
};

/// A user's level over event time, a type-2 slowly changing dimension: a row per run of
/// consecutive events at one level (SPEC's order), from its first event to the next run's.
pub const DM_USERS_HISTORY: TableDef = TableDef {
    name: "dm_users_history",
    columns: &[
        req("user_id", Integer),
        req("level", Text),
        req("valid_from", Timestamp),
        col("valid_to", Timestamp),
        req("is_current", Boolean),
    ],
    // No key: two runs of a user may start at one time (events that share a `ts`, ordered
    // by itemInSession), and such data must load.
    primary_key: &[],
};

pub const DM_SONGS: TableDef = TableDef {
    name: "dm_songs",
    columns: &[
        req("song_id", Text),
        col("title", Text),
        col("artist_id", Text),
        col("year", Integer),
        col("duration", Double),
    ],
    primary_key: &["song_id"],
};

pub const DM_ARTISTS: TableDef = TableDef {
    name: "dm_artists",
    columns: &[
        req("artist_id", Text),
        col("name", Text),
        col("location", Text),
        col("latitude", Double),
        col("longitude", Double),
    ],
    primary_key: &["artist_id"],
};

pub const DM_TIME: TableDef = TableDef {
    name: "dm_time",
    columns: &[
        req("start_time", Timestamp),
        req("hour", Integer),
        req("day", Integer),
        req("week", Integer),
        req("month", Integer),
        req("year", Integer),
        req("weekday", Integer),
    ],
    primary_key: &["start_time"],
};

/// The rejects of the run that produced the current tables (the engine's `stl_load_errors`).
pub const LOAD_ERRORS: TableDef = TableDef {
    name: "load_errors",
    columns: &[
        text("source", PATH_BYTES, true),
        col("line", BigInt),
        col("byte_offset", BigInt),
        text("column_name", 1024, false),
        text("reason", 4096, true),
        // RAW_LIMIT bytes of the record and an ellipsis.
        text("raw_text", 2048, false),
        req("run_started_at", Timestamp),
        text("run_id", RUN_ID_BYTES, true),
    ],
    primary_key: &[],
};

/// Every input file the tables hold rows of, written in the same transaction as the rows:
/// what an incremental load compares the input with. `version` is a local file's mtime (ns
/// since the epoch) or an S3 object's ETag; `checksum` the XXH64 of its bytes as stored.
pub const ETL_FILES: TableDef = TableDef {
    name: "etl_files",
    columns: &[
        req("file_id", Integer),
        text("kind", 16, true),
        text("path", PATH_BYTES, true),
        req("size", BigInt),
        // A local file's mtime in nanoseconds, or an S3 ETag (a multipart one is longer).
        text("version", 256, false),
        // `xxh64:` and 16 hex digits.
        text("checksum", 32, true),
        req("rows_staged", BigInt),
        req("rejects", BigInt),
        req("loaded_at", Timestamp),
        text("run_id", RUN_ID_BYTES, true),
    ],
    primary_key: &["file_id"],
};

/// The fields of a run's input that drifted from the staging schema (`drift` of sparkify-model), a
/// row per table, field, JSON type and kind; kept across loads like [`ETL_RUNS`].
pub const SCHEMA_DRIFT: TableDef = TableDef {
    name: "schema_drift",
    columns: &[
        text("run_id", RUN_ID_BYTES, true),
        text("table_name", 64, true),
        text("field", FIELD_BYTES, true),
        text("json_type", 16, true),
        text("drift", 16, true),
        text("first_source", PATH_BYTES, true),
        req("first_line", BigInt),
        req("records", BigInt),
    ],
    primary_key: &[],
};

/// One row per committed load, written in its transaction and never replaced by a later one
/// (see `history` of sparkify-model): `etl_runs.run_id` is the `run_id` of the rows it wrote to
/// `load_errors` and `etl_files`.
pub const ETL_RUNS: TableDef = TableDef {
    name: "etl_runs",
    columns: &[
        text("run_id", RUN_ID_BYTES, true),
        req("started_at", Timestamp),
        req("ended_at", Timestamp),
        text("version", 32, true),
        text("command", COMMAND_BYTES, true),
        text("sink", 1024, true),
        text("mode", 16, true),
        req("files_new", BigInt),
        req("files_changed", BigInt),
        req("files_unchanged", BigInt),
        req("files_vanished", BigInt),
        req("rejects", BigInt),
        req("staging_events", BigInt),
        req("staging_songs", BigInt),
        req("ft_songplays", BigInt),
        req("dm_users", BigInt),
        req("dm_songs", BigInt),
        req("dm_artists", BigInt),
        req("dm_time", BigInt),
        text("checks", 16, true),
    ],
    primary_key: &["run_id"],
};

/// The staging tables: every valid input record, as read.
pub const STAGING_TABLES: [&TableDef; 2] = [&STAGING_EVENTS, &STAGING_SONGS];

/// The six tables of the star schema, fact first.
pub const STAR_TABLES: [&TableDef; 6] = [
    &FT_SONGPLAYS,
    &DM_USERS,
    &DM_SONGS,
    &DM_ARTISTS,
    &DM_TIME,
    &DM_USERS_HISTORY,
];

/// Every table of the warehouse, in the order a run reports them: what `verify` compares and
/// `analytics` counts.
pub const ALL_TABLES: [&TableDef; 9] = {
    // The staging tables, the star schema's, then the rejects.
    let mut out = [&LOAD_ERRORS; 9];
    let mut i = 0;
    while i < STAGING_TABLES.len() {
        out[i] = STAGING_TABLES[i];
        i += 1;
    }
    while i < STAGING_TABLES.len() + STAR_TABLES.len() {
        out[i] = STAR_TABLES[i - STAGING_TABLES.len()];
        i += 1;
    }
    out
};

/// Every table a sink writes: [`ALL_TABLES`] and the ledger of input files, [`ETL_FILES`].
pub const SINK_TABLES: [&TableDef; 10] = {
    let mut out = [&ETL_FILES; 10];
    let mut i = 0;
    while i < ALL_TABLES.len() {
        out[i] = ALL_TABLES[i];
        i += 1;
    }
    out
};
