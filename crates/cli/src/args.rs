//! The command line, as clap structs and nothing else: [`crate::settings`] resolves them with
//! the environment and `sparkify.toml`. Flags that configure one sink or one source live in a
//! group of their own, shown under its own heading in `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sparkify::{Input, SinkSpec};

#[derive(Debug, Parser)]
#[command(
    name = "sparkify",
    version,
    about = "Sparkify's JSON logs into a star schema"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// What stderr says besides the progress bars: text, or one JSON object a line (phases
    /// with their durations, warnings, rejects, the summary, the error) for an orchestrator.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How stderr speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For a person: lines of text, and progress bars on a terminal.
    #[default]
    Text,
    /// For a program: one JSON object a line, no progress bars.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole job offline: the bundled real data into ./sparkify.duckdb.
    Run(RunArgs),
    /// Extract, transform and load: song files and event logs into a sink.
    Etl(EtlArgs),
    /// Generate a realistic data set of any size in the real layout.
    Gen(GenArgs),
    /// Create (drop, then create) or drop every table in a sink.
    Tables(TablesArgs),
    /// Run one SQL query on a sink and print its result.
    Sql(SqlArgs),
    /// The analytics team's questions: top songs, artists and users, free vs paid, plays per
    /// weekday and hour.
    Analytics(AnalyticsArgs),
    /// Compare every table's row count and content fingerprint across sinks (and the input);
    /// exit 1 when they differ.
    Verify(VerifyArgs),
    /// Write a commented sparkify.toml, or convert a boto3-style dwh.cfg (the Udacity Sparkify
    /// project's) into one.
    Init(InitArgs),
    /// The settings: `config show` prints each one's value and where it came from.
    Config(ConfigCmd),
    /// The Redshift cluster's life cycle: create, status, delete.
    Cluster(ClusterCmd),
    /// The run history: a row per committed load (when, what, how many files and rows).
    Runs(RunsArgs),
    /// Check the loaded tables: keys, relationships, accepted values, freshness, row
    /// conservation; exit 1 when one fails.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub target: QueryArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: QueryArgs,
    /// Which plays became songplays in the load being checked: with `all`, a play's NULL
    /// song and artist are not missing from their dimensions.
    #[arg(long, value_enum, default_value_t = Songplays::Matched)]
    pub songplays: Songplays,
    #[command(flatten)]
    pub freshness: FreshnessArgs,
}

/// The freshness check's settings.
#[derive(Debug, Clone, Args)]
pub struct FreshnessArgs {
    /// Freshness: the newest play may be at most this old (26h, 2d, 90m). Without it,
    /// freshness is not checked.
    #[arg(long, value_parser = sparkify_core::checks::parse_age)]
    pub max_age: Option<std::time::Duration>,
    /// Measure freshness from this time (UTC unless it says otherwise: 2018-12-01,
    /// 2018-12-01T06:00:00, RFC 3339) instead of now.
    #[arg(long, value_parser = sparkify_core::checks::parse_as_of, requires = "max_age")]
    pub as_of: Option<i64>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Convert the Udacity Sparkify project's boto3-style dwh.cfg (INI: [AWS], [DWH], [CLUSTER], [IAM_ROLE], [S3]); its AWS
    /// keys and passwords are left out.
    #[arg(long, value_name = "DWH_CFG")]
    pub from_dwh_cfg: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// Where to write (default ./sparkify.toml).
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ConfigCmd {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Every setting's value (secrets as <secret>) and where it came from: flag, env, file or
    /// default.
    Show(ConfigShowArgs),
}

#[derive(Debug, Args)]
pub struct ConfigShowArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub redshift: RedshiftArgs,
}

/// The cluster and the AWS account it lives in; over `[cluster]` and `[aws]`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// The cluster's identifier ([cluster] identifier).
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// The node type, as ra3.large ([cluster] node_type).
    #[arg(long)]
    pub node_type: Option<String>,
    /// Nodes; 1 is a single-node cluster ([cluster] num_nodes).
    #[arg(long)]
    pub nodes: Option<u32>,
    /// The IPv4 CIDR let in to the cluster's port ([cluster] allow_cidr).
    #[arg(long)]
    pub cidr: Option<String>,
    /// Redshift Serverless: a namespace and a workgroup instead of a cluster ([redshift]
    /// serverless).
    #[arg(long)]
    pub serverless: bool,
    /// The Serverless workgroup ([redshift] workgroup; implies --serverless).
    #[arg(long)]
    pub workgroup: Option<String>,
    /// The Serverless namespace ([redshift] namespace; else the workgroup's name).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The workgroup's base capacity in RPUs ([cluster] base_capacity).
    #[arg(long)]
    pub base_capacity: Option<u32>,
    /// The AWS region ([aws] region; else the AWS chain).
    #[arg(long)]
    pub region: Option<String>,
    /// A profile of the AWS config files ([aws] profile; else AWS_PROFILE).
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct ClusterCmd {
    #[command(subcommand)]
    pub action: ClusterAction,
}

#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// The IAM role, the cluster (--serverless: a namespace and a workgroup), a wait until it
    /// is available, the ingress rule; the endpoint and role written back to sparkify.toml.
    /// What exists is reused.
    Create(ClusterCreateArgs),
    /// The cluster's (or workgroup's) state; exit 0 when it is available, 1 otherwise.
    Status(ClusterStatusArgs),
    /// The cluster (or the workgroup and its namespace) after a final snapshot, its ingress
    /// rule and the role.
    Delete(ClusterDeleteArgs),
}

#[derive(Debug, Args)]
pub struct ClusterCreateArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Let in 0.0.0.0/0 (anyone) when no CIDR is given, or when it is 0.0.0.0/0.
    #[arg(long)]
    pub allow_anywhere: bool,
    /// Seconds to wait for the cluster to become available.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// Seconds between two looks at the cluster's state.
    #[arg(long, default_value_t = 15, hide = true)]
    pub poll: u64,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ClusterStatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ClusterDeleteArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Delete without a final snapshot.
    #[arg(long)]
    pub skip_final_snapshot: bool,
    /// Keep the IAM role.
    #[arg(long)]
    pub keep_role: bool,
    /// Seconds to wait for the cluster to be gone.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    #[arg(long, default_value_t = 15, hide = true)]
    pub poll: u64,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where the fixtures are (default: ./fixtures/sparkify, i.e. run from the repository's root).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// The sink (default: duckdb:sparkify.duckdb).
    #[arg(long, default_value = "duckdb:sparkify.duckdb", value_parser = SinkParser)]
    pub sink: SinkSpec,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args)]
pub struct EtlArgs {
    /// Song files: a folder (walked recursively), a file, a glob or s3://bucket/prefix.
    #[arg(long, num_args = 1..)]
    pub songs: Vec<Input>,
    /// Event logs: a folder (walked recursively), a file, a glob or s3://bucket/prefix.
    #[arg(long, num_args = 1..)]
    pub events: Vec<Input>,
    /// Where the tables go: duckdb:PATH, postgres://user@host:port/db, redshift,
    /// parquet:DIR or parquet:s3://bucket/prefix.
    #[arg(long, value_parser = SinkParser)]
    pub sink: SinkSpec,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Everything a load takes besides where from and where to.
#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub run: RunOptions,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub duckdb: DuckDbArgs,
    #[command(flatten)]
    pub parquet: ParquetArgs,
    #[command(flatten)]
    pub redshift: RedshiftArgs,
}

/// How a run reads, builds and reports.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Rejected records allowed before the run commits nothing (as Redshift's MAXERROR).
    #[arg(long, default_value_t = 0)]
    pub max_errors: u64,
    /// Which plays become songplays.
    #[arg(long, value_enum, default_value_t = Songplays::Matched)]
    pub songplays: Songplays,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Rows per decoded batch (the tables are the same for any size).
    #[arg(long, default_value_t = sparkify_core::reader::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// The most input decoded and not yet loaded at once, in bytes (suffixes KiB, MiB,
    /// GiB): what bounds the run's memory besides the songs and the star schema. At least
    /// one part (a group of small files, or a chunk of a large one, about 4 MiB) is always
    /// in flight. Rejects beyond a quarter of it wait in a temporary file for the load.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub in_flight: u64,
    /// Also write the run summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Print every SQL statement the load would run, in order, without connecting.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds a load waits for another load into the same sink (PostgreSQL's advisory
    /// lock and table locks; DuckDB's file lock) before it fails with exit 4.
    #[arg(long, default_value_t = sparkify_core::sink::DEFAULT_LOCK_TIMEOUT.as_secs())]
    pub lock_timeout: u64,
    /// Parse only the input files that are new or changed since the last load into this sink
    /// (by the sink's etl_files: path, size, mtime or ETag), replace a changed file's rows,
    /// and update the star schema's rows of the users, songs, artists, times and sessions
    /// they touch. DuckDB, PostgreSQL, Redshift with Parquet staging.
    #[arg(long)]
    pub incremental: bool,
    /// With --incremental: remove the rows of files loaded before that are no longer in the
    /// input (without it they stay, and are reported).
    #[arg(long, requires = "incremental")]
    pub prune: bool,
    /// With --incremental: drop the star schema and build it again over everything staged,
    /// as a full load does, instead of updating the rows of what changed.
    #[arg(long, requires = "incremental")]
    pub rebuild: bool,
    /// What a load does with a field of the input that the staging tables do not have:
    /// load the rest and warn, commit nothing (exit 2), or load the rest and say nothing
    /// (every one is still recorded in the sink's schema_drift table).
    #[arg(long, value_enum, default_value_t = NewFieldArg::Warn)]
    pub on_new_field: NewFieldArg,
    /// Run the checks of `sparkify check` inside the load's transaction before its COMMIT;
    /// when one fails, commit nothing and exit 4, naming it.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub freshness: FreshnessArgs,
}

/// A size in bytes: `65536`, `64KiB`, `64MiB`, `1GiB` (or KB, MB, GB, also in powers of
/// two).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = sparkify_core::text::number_and_unit(text)
        .ok_or_else(|| format!("{text:?} is not a size: expected a number, as in 64MiB"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("{other:?} is not a unit: use KiB, MiB or GiB")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `--on-new-field`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NewFieldArg {
    /// Load the rest, and warn.
    Warn,
    /// Commit nothing, and exit 2.
    Fail,
    /// Load the rest, and say nothing (schema_drift records it).
    Ignore,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Songplays {
    /// Only plays whose song is known.
    Matched,
    /// Every play, unknown songs with NULL ids.
    All,
}

/// The config file.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// The config file (Redshift connection, S3 paths, IAM role); default ./sparkify.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// S3, for `s3://` inputs and outputs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "S3")]
pub struct S3Args {
    /// S3 GETs (and uploads) at a time.
    #[arg(long, default_value_t = sparkify_s3::DEFAULT_CONCURRENCY)]
    pub s3_concurrency: usize,
    /// Send S3 requests unsigned, for public buckets.
    #[arg(long)]
    pub no_sign_request: bool,
    /// An S3-compatible endpoint (default: [s3] endpoint, else AWS_ENDPOINT_URL).
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// The S3 region (default: [s3] region, else the AWS chain, else us-east-1).
    #[arg(long)]
    pub s3_region: Option<String>,
    /// Seconds to wait for a connection to S3 (default: [s3] connect_timeout, else 5).
    #[arg(long)]
    pub s3_connect_timeout: Option<u64>,
    /// Seconds an S3 response may keep silent, before its first byte or midway through a
    /// body, before the attempt is given up (default: [s3] read_timeout, else 30).
    #[arg(long)]
    pub s3_read_timeout: Option<u64>,
    /// Attempts per S3 request, the first included, with backoff between them (default:
    /// [s3] attempts, else 5).
    #[arg(long)]
    pub s3_attempts: Option<u32>,
}

/// The DuckDB sink.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "DuckDB sink")]
pub struct DuckDbArgs {
    /// Where the star schema is built (PostgreSQL and Redshift always use SQL).
    #[arg(long, value_enum, default_value_t = TransformArg::Memory)]
    pub transform: TransformArg,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum TransformArg {
    /// Build the star schema in memory and append it (DuckDB's default).
    #[default]
    Memory,
    /// Stage only; the sink builds the star schema with the shared SQL.
    Sql,
}

/// The Parquet sink.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Parquet sink")]
pub struct ParquetArgs {
    /// Also write the staging tables (staging_events, staging_songs) to the lake.
    #[arg(long, alias = "with-staging")]
    pub with_staging_tables: bool,
    /// The codec.
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    pub compression: CompressionArg,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum CompressionArg {
    #[default]
    Zstd,
    Snappy,
}

/// The Redshift sink: connection settings that override `[redshift]`, and what COPY reads.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Redshift sink")]
pub struct RedshiftArgs {
    /// The cluster's endpoint host.
    #[arg(long)]
    pub redshift_host: Option<String>,
    /// The cluster's port (default 5439).
    #[arg(long)]
    pub redshift_port: Option<u16>,
    /// The database.
    #[arg(long)]
    pub redshift_database: Option<String>,
    /// The user (the password comes from PGPASSWORD, ~/.pgpass, --iam-auth or the config
    /// file).
    #[arg(long)]
    pub redshift_user: Option<String>,
    /// What COPY reads: json (the input where it lies in S3) or parquet (the parsed staging
    /// tables, uploaded to --upload-prefix). Default: [redshift] copy_from, else json.
    #[arg(long, alias = "staging")]
    pub copy_from: Option<String>,
    /// Where the Parquet upload puts its parts (default: [s3] upload_prefix).
    #[arg(long, alias = "staging-prefix")]
    pub upload_prefix: Option<String>,
    /// Connect with temporary credentials from Redshift's GetClusterCredentials for
    /// [cluster] identifier (the AWS credential chain), so no password exists anywhere.
    #[arg(long)]
    pub iam_auth: bool,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Where to write song_data/ and log_data/.
    #[arg(long)]
    pub out: PathBuf,
    /// Song files.
    #[arg(long, default_value_t = 14896)]
    pub songs: usize,
    /// Days of logs, from 2018-11-01.
    #[arg(long, default_value_t = 30)]
    pub days: usize,
    /// Distinct users.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Events per day.
    #[arg(long, default_value_t = 270)]
    pub events_per_day: usize,
    /// The fraction of plays whose song is in the song files.
    #[arg(long, default_value_t = 0.05)]
    pub match_fraction: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write every file gzipped (`.json.gz`).
    #[arg(long)]
    pub gzip: bool,
}

#[derive(Debug, Args)]
pub struct TablesArgs {
    #[arg(value_enum)]
    pub action: TablesActionArg,
    /// duckdb:PATH, postgres://user@host:port/db, or redshift.
    #[arg(long, value_parser = SinkParser)]
    pub sink: SinkSpec,
    /// Print the statements instead of running them.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub redshift: RedshiftArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TablesActionArg {
    Create,
    Drop,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query.
    pub query: String,
    #[command(flatten)]
    pub target: QueryArgs,
}

#[derive(Debug, Args)]
pub struct AnalyticsArgs {
    #[command(flatten)]
    pub target: QueryArgs,
    /// Write the answers as one self-contained HTML page (charts and tables, row counts and
    /// rejects) to this file instead of printing them.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A copy to compare: duckdb:PATH, postgres://user@host:port/db, redshift or parquet:DIR.
    /// Give it twice or more, or once with --source; the first copy is the reference.
    #[arg(long = "sink", value_parser = SinkParser)]
    pub sinks: Vec<SinkSpec>,
    /// Also rebuild the tables from --songs and --events, in memory, as the reference.
    #[arg(long, requires_all = ["songs", "events"])]
    pub source: bool,
    /// Song files (with --source): a folder, a file, a glob or s3://bucket/prefix.
    #[arg(long, num_args = 1..)]
    pub songs: Vec<Input>,
    /// Event logs (with --source): a folder, a file, a glob or s3://bucket/prefix.
    #[arg(long, num_args = 1..)]
    pub events: Vec<Input>,
    /// Which plays became songplays in the load being verified (with --source).
    #[arg(long, value_enum, default_value_t = Songplays::Matched)]
    pub songplays: Songplays,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub redshift: RedshiftArgs,
}

/// Which sink a query runs on, and how its result is printed.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// duckdb:PATH, postgres://user@host:port/db, or redshift.
    #[arg(long, default_value = "duckdb:sparkify.duckdb", value_parser = SinkParser)]
    pub sink: SinkSpec,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub redshift: RedshiftArgs,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Aligned tables.
    #[default]
    Table,
    /// CSV with a header row (RFC 4180 quoting).
    Csv,
    /// JSON: rows as objects.
    Json,
}

/// `--sink`, by [`SinkSpec`]'s rules. A value it refuses is not repeated in the error, as
/// clap's own would: a PostgreSQL URL may hold a password.
#[derive(Debug, Clone, Copy)]
struct SinkParser;

impl clap::builder::TypedValueParser for SinkParser {
    type Value = SinkSpec;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<SinkSpec, clap::Error> {
        let refused = |why: String| {
            let flag = arg.map_or_else(|| "--sink".to_owned(), |a| a.to_string());
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value for '{flag}': {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refused("not UTF-8".to_owned()))?;
        text.parse().map_err(refused)
    }
}
