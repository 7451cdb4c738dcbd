//! Redshift's rules for a statement, each with the page of the Amazon Redshift Database
//! Developer Guide it comes from: what Redshift refuses is refused here with Redshift's
//! message, and what it accepts is turned into the PostgreSQL that behaves the same way
//! (`VARCHAR(n)` counting bytes, `IDENTITY(seed, step)`, its literals' backslashes), its
//! distribution and sort keys recorded.

use crate::lex::{self, Kind, Token};

/// A statement Redshift would refuse: its SQLSTATE, its message, and the page that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub page: &'static str,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>, page: &'static str) -> Self {
        Refusal {
            code,
            message: message.into(),
            page,
        }
    }

    fn syntax(near: &str, page: &'static str) -> Self {
        Refusal::new("42601", format!("syntax error at or near \"{near}\""), page)
    }
}

/// The pages the rules come from (Amazon Redshift Database Developer Guide).
pub mod page {
    pub const RESERVED: &str = "Reserved words";
    pub const NAMES: &str = "Names and identifiers";
    pub const CHARACTER_TYPES: &str = "Character types";
    pub const DATA_TYPES: &str = "Data types";
    pub const UNSUPPORTED_TYPES: &str = "Unsupported PostgreSQL data types";
    pub const UNSUPPORTED_FEATURES: &str = "Unsupported PostgreSQL features";
    pub const UNSUPPORTED_FUNCTIONS: &str = "Unsupported PostgreSQL functions";
    pub const CREATE_TABLE: &str = "CREATE TABLE";
    pub const ALTER_TABLE: &str = "ALTER TABLE";
    pub const TRUNCATE: &str = "TRUNCATE";
    pub const LOCK: &str = "LOCK";
    pub const SET: &str = "SET";
    pub const SERIALIZABLE: &str = "Serializable isolation";
    pub const COPY: &str = "COPY";
    pub const COPY_PARAMETERS: &str = "COPY: Data load parameters";
    pub const COPY_JSON: &str = "COPY from JSON format";
    pub const COPY_COLUMNAR: &str = "COPY from columnar data formats";
    pub const LOAD_ERRORS: &str = "Load error reference";
    pub const STL_LOAD_ERRORS: &str = "STL_LOAD_ERRORS";
    pub const SYS_LOAD_ERROR_DETAIL: &str = "SYS_LOAD_ERROR_DETAIL";
    pub const PG_LAST_COPY_ID: &str = "PG_LAST_COPY_ID";
    pub const PG_LAST_COPY_COUNT: &str = "PG_LAST_COPY_COUNT";
    pub const MANIFEST: &str = "Using a manifest to specify data files";
}

/// Redshift's reserved words ("Reserved words"): none is taken as an unquoted identifier.
pub const RESERVED: &[&str] = &[
    "AES128",
    "AES256",
    "ALL",
    "ALLOWOVERWRITE",
    "ANALYSE",
    "ANALYZE",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "AUTHORIZATION",
    "AZ64",
    "BACKUP",
    "BETWEEN",
    "BINARY",
    "BLANKSASNULL",
    "BOTH",
    "BYTEDICT",
    "BZIP2",
    "CASE",
    "CAST",
    "CHECK",
    "COLLATE",
    "COLUMN",
    "CONSTRAINT",
    "CREATE",
    "CREDENTIALS",
    "CROSS",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "CURRENT_USER_ID",
    "DEFAULT",
    "DEFERRABLE",
    "DEFLATE",
    "DEFRAG",
    "DELTA",
    "DELTA32K",
    "DESC",
    "DISABLE",
    "DISTINCT",
    "DO",
    "ELSE",
    "EMPTYASNULL",
    "ENABLE",
    "ENCODE",
    "ENCRYPT",
    "ENCRYPTION",
    "END",
    "EXCEPT",
    "EXPLICIT",
    "FALSE",
    "FOR",
    "FOREIGN",
    "FREEZE",
    "FROM",
    "FULL",
    "GLOBALDICT256",
    "GLOBALDICT64K",
    "GRANT",
    "GROUP",
    "GZIP",
    "HAVING",
    "IDENTITY",
    "IGNORE",
    "ILIKE",
    "IN",
    "INITIALLY",
    "INNER",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IS",
    "ISNULL",
    "JOIN",
    "LANGUAGE",
    "LEADING",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "LUN",
    "LUNS",
    "LZO",
    "LZOP",
    "MINUS",
    "MOSTLY16",
    "MOSTLY32",
    "MOSTLY8",
    "NATURAL",
    "NEW",
    "NOT",
    "NOTNULL",
    "NULL",
    "NULLS",
    "OFF",
    "OFFLINE",
    "OFFSET",
    "OID",
    "OLD",
    "ON",
    "ONLY",
    "OPEN",
    "OR",
    "ORDER",
    "OUTER",
    "OVERLAPS",
    "PARALLEL",
    "PARTITION",
    "PERCENT",
    "PERMISSIONS",
    "PIVOT",
    "PLACING",
    "PRIMARY",
    "RAW",
    "READRATIO",
    "RECOVER",
    "REFERENCES",
    "REJECTLOG",
    "RESORT",
    "RESPECT",
    "RESTORE",
    "RIGHT",
    "SELECT",
    "SESSION_USER",
    "SIMILAR",
    "SNAPSHOT",
    "SOME",
    "SYSDATE",
    "SYSTEM",
    "TABLE",
    "TAG",
    "TDES",
    "TEXT255",
    "TEXT32K",
    "THEN",
    "TIMESTAMP",
    "TO",
    "TOP",
    "TRAILING",
    "TRUE",
    "TRUNCATECOLUMNS",
    "UNION",
    "UNIQUE",
    "UNNEST",
    "UNPIVOT",
    "USER",
    "USING",
    "VERBOSE",
    "WALLET",
    "WHEN",
    "WHERE",
    "WITH",
    "WITHOUT",
];

/// PostgreSQL's reserved key words (its manual's appendix "SQL Key Words"): PostgreSQL itself
/// refuses these as identifiers, with the message Redshift gives.
const PG_RESERVED: &[&str] = &[
    "ALL",
    "ANALYSE",
    "ANALYZE",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "ASYMMETRIC",
    "AUTHORIZATION",
    "BINARY",
    "BOTH",
    "CASE",
    "CAST",
    "CHECK",
    "COLLATE",
    "COLLATION",
    "COLUMN",
    "CONCURRENTLY",
    "CONSTRAINT",
    "CREATE",
    "CROSS",
    "CURRENT_CATALOG",
    "CURRENT_DATE",
    "CURRENT_ROLE",
    "CURRENT_SCHEMA",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "DEFAULT",
    "DEFERRABLE",
    "DESC",
    "DISTINCT",
    "DO",
    "ELSE",
    "END",
    "EXCEPT",
    "FALSE",
    "FETCH",
    "FOR",
    "FOREIGN",
    "FREEZE",
    "FROM",
    "FULL",
    "GRANT",
    "GROUP",
    "HAVING",
    "ILIKE",
    "IN",
    "INITIALLY",
    "INNER",
    "INTERSECT",
    "INTO",
    "IS",
    "ISNULL",
    "JOIN",
    "LATERAL",
    "LEADING",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "NATURAL",
    "NOT",
    "NOTNULL",
    "NULL",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "OUTER",
    "OVERLAPS",
    "PLACING",
    "PRIMARY",
    "REFERENCES",
    "RETURNING",
    "RIGHT",
    "SELECT",
    "SESSION_USER",
    "SIMILAR",
    "SOME",
    "SYMMETRIC",
    "SYSTEM_USER",
    "TABLE",
    "TABLESAMPLE",
    "THEN",
    "TO",
    "TRAILING",
    "TRUE",
    "UNION",
    "UNIQUE",
    "USER",
    "USING",
    "VARIADIC",
    "VERBOSE",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// Column compression encodings ("Compression encodings").
pub const ENCODINGS: &[&str] = &[
    "RAW",
    "AZ64",
    "BYTEDICT",
    "DELTA",
    "DELTA32K",
    "LZO",
    "MOSTLY8",
    "MOSTLY16",
    "MOSTLY32",
    "RUNLENGTH",
    "TEXT255",
    "TEXT32K",
    "ZSTD",
];

/// The longest identifier, in bytes ("Names and identifiers").
pub const MAX_NAME_BYTES: usize = 127;
/// The widest `VARCHAR`, in bytes ("Character types").
pub const MAX_VARCHAR: u32 = 65_535;
/// The widest `CHAR`, in bytes ("Character types").
pub const MAX_CHAR: u32 = 4_096;
/// What `TEXT`, `BPCHAR` and a bare `VARCHAR` mean: `VARCHAR(256)` ("Character types").
pub const DEFAULT_VARCHAR: u32 = 256;

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// A reserved word of Redshift's that PostgreSQL takes as a name: the ones the stand-in must
/// catch itself.
fn redshift_only_reserved(word: &str) -> bool {
    is_reserved(word) && !PG_RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// What a statement becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Runs on PostgreSQL as it is now written.
    Run(String),
    /// `CREATE TABLE`: runs, and its keys and encodings are recorded.
    Create { sql: String, meta: TableMeta },
    /// `TRUNCATE`: runs, then commits ("TRUNCATE": it commits the transaction it runs in).
    Truncate(String),
    /// `ALTER TABLE … ALTER COLUMN … TYPE VARCHAR(n)`, to be checked against the catalog and
    /// the transaction first.
    AlterType {
        table: String,
        column: String,
        width: u32,
    },
    /// `COPY … FROM 's3://…'`: the statement as given.
    CopyS3(String),
}

/// A table's distribution, sort keys and encodings, as `CREATE TABLE` gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableMeta {
    pub table: String,
    /// `AUTO`, `EVEN`, `KEY` or `ALL`.
    pub diststyle: String,
    pub distkey: Option<String>,
    /// `COMPOUND` or `INTERLEAVED`, and the columns in order.
    pub sortkind: String,
    pub sortkey: Vec<String>,
    /// `ENCODE AUTO` said of the table.
    pub encode_auto: bool,
    /// `(column, encoding)` for each column given an `ENCODE`.
    pub encodings: Vec<(String, String)>,
    pub if_not_exists: bool,
}

/// Splices: each replaces a range of the statement.
#[derive(Default)]
struct Edits(Vec<(std::ops::Range<usize>, String)>);

impl Edits {
    fn replace(&mut self, range: std::ops::Range<usize>, with: impl Into<String>) {
        self.0.push((range, with.into()));
    }

    fn apply(mut self, sql: &str) -> String {
        self.0.sort_by_key(|(r, _)| r.start);
        let mut out = String::with_capacity(sql.len() + 64);
        let mut at = 0;
        for (r, with) in self.0 {
            if r.start < at {
                continue;
            }
            out.push_str(&sql[at..r.start]);
            out.push_str(&with);
            at = r.end;
        }
        out.push_str(&sql[at..]);
        out
    }
}

/// A name as PostgreSQL stores it: unquoted names folded to lower case.
pub fn name_of(sql: &str, t: &Token) -> String {
    match &t.kind {
        Kind::Quoted(v) => v.clone(),
        _ => t.text(sql).to_ascii_lowercase(),
    }
}

/// A string as a PostgreSQL literal (standard strings: only `'` doubled).
pub fn pg_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A name as a PostgreSQL identifier.
pub fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Functions PostgreSQL has and Redshift does not ("Unsupported PostgreSQL functions",
/// "Unsupported PostgreSQL features").
const PG_ONLY_FUNCTIONS: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_lock",
    "pg_try_advisory_xact_lock",
    "pg_advisory_unlock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock_shared",
    "hashtext",
    "string_agg",
    "array_agg",
    "jsonb_build_object",
    "to_jsonb",
    "json_agg",
    "jsonb_agg",
    "generate_series",
    "txid_current",
    "set_config",
    "pg_sleep",
];

/// Settings Redshift's `SET` does not know ("SET" and the server configuration reference).
const UNKNOWN_SETTINGS: &[&str] = &[
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "work_mem",
    "synchronous_commit",
];

/// Types PostgreSQL has and Redshift does not ("Unsupported PostgreSQL data types").
const UNSUPPORTED_TYPES: &[&str] = &[
    "json",
    "jsonb",
    "serial",
    "bigserial",
    "smallserial",
    "serial4",
    "serial8",
    "serial2",
    "uuid",
    "bytea",
    "xml",
    "inet",
    "cidr",
    "macaddr",
    "money",
    "tsvector",
    "tsquery",
    "point",
    "line",
    "box",
    "path",
    "polygon",
    "circle",
    "bit",
    "oid",
    "txid_snapshot",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
];

/// Checks `sql` (one statement) against Redshift's rules and says what runs in its place.
pub fn check(sql: &str) -> Result<Action, Refusal> {
    let tokens = lex::tokens(sql).map_err(|u| {
        Refusal::new(
            "42601",
            format!(
                "unterminated {} at or near \"{}\"",
                u.what,
                &sql[u.at..].chars().take(20).collect::<String>()
            ),
            page::NAMES,
        )
    })?;
    let t = &tokens;
    let word = |i: usize, w: &str| t.get(i).is_some_and(|t| t.is(sql, w));
    names(sql, t)?;
    // COPY's parameters are keywords of their own ("COPY"); the copy module checks them.
    if word(0, "COPY") {
        return copy_kind(sql, t);
    }
    unsupported(sql, t)?;
    reserved_words(sql, t)?;

    if word(0, "CREATE") {
        let mut i = 1;
        if word(i, "UNIQUE") {
            i += 1;
        }
        if word(i, "INDEX") {
            return Err(Refusal::new(
                "0A000",
                "CREATE INDEX is not supported",
                page::UNSUPPORTED_FEATURES,
            ));
        }
        let mut j = 1;
        while word(j, "TEMP") || word(j, "TEMPORARY") || word(j, "LOCAL") {
            j += 1;
        }
        if word(j, "TABLE") {
            return create_table(sql, t, j + 1);
        }
    }
    if word(0, "ALTER") && word(1, "TABLE") {
        return alter_table(sql, t);
    }
    if word(0, "TRUNCATE") {
        return Ok(Action::Truncate(literals(sql, t)));
    }
    if word(0, "SET") {
        let mut i = 1;
        if word(i, "LOCAL") || word(i, "SESSION") {
            i += 1;
        }
        if let Some(name) = t.get(i).filter(|t| t.kind == Kind::Word) {
            let name = name.text(sql).to_ascii_lowercase();
            if UNKNOWN_SETTINGS.contains(&name.as_str()) {
                return Err(Refusal::new(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                    page::SET,
                ));
            }
        }
    }
    Ok(Action::Run(literals(sql, t)))
}

/// "Names and identifiers": at most 127 bytes.
fn names(sql: &str, t: &[Token]) -> Result<(), Refusal> {
    for tok in t {
        let name = match &tok.kind {
            Kind::Word => tok.text(sql),
            Kind::Quoted(v) => v.as_str(),
            _ => continue,
        };
        if name.len() > MAX_NAME_BYTES {
            return Err(Refusal::new(
                "42622",
                format!(
                    "identifier \"{}…\" is {} bytes long, more than the {MAX_NAME_BYTES} an \
                     identifier may have",
                    name.chars().take(32).collect::<String>(),
                    name.len()
                ),
                page::NAMES,
            ));
        }
    }
    Ok(())
}

/// What PostgreSQL has and Redshift refuses, wherever it appears.
fn unsupported(sql: &str, t: &[Token]) -> Result<(), Refusal> {
    let not = |what: &str, page: &'static str| {
        Err(Refusal::new(
            "0A000",
            format!("{what} is not supported"),
            page,
        ))
    };
    for (i, tok) in t.iter().enumerate() {
        let next = |w: &str| t.get(i + 1).is_some_and(|n| n.is(sql, w));
        if tok.kind != Kind::Word {
            if tok.punct(sql, "[") {
                return not("an array", page::UNSUPPORTED_TYPES);
            }
            if tok.punct(sql, "::")
                && let Some(ty) = t.get(i + 1).filter(|n| n.kind == Kind::Word)
            {
                let ty = ty.text(sql).to_ascii_lowercase();
                if UNSUPPORTED_TYPES.contains(&ty.as_str()) {
                    return Err(unsupported_type("a cast", &ty));
                }
            }
            continue;
        }
        let w = tok.text(sql).to_ascii_lowercase();
        match w.as_str() {
            "on" if next("conflict") => return not("ON CONFLICT", page::UNSUPPORTED_FEATURES),
            "returning" => return not("RETURNING", page::UNSUPPORTED_FEATURES),
            "distinct" if next("on") => return not("DISTINCT ON", page::UNSUPPORTED_FEATURES),
            "for" if next("update") || next("share") || next("no") => {
                return not("SELECT … FOR UPDATE", page::UNSUPPORTED_FEATURES);
            }
            "tablespace" | "unlogged" | "concurrently" | "listen" | "notify" | "lateral" => {
                return not(&w.to_uppercase(), page::UNSUPPORTED_FEATURES);
            }
            "collate" => {
                let ok = t
                    .get(i + 1)
                    .is_some_and(|n| n.is(sql, "case_sensitive") || n.is(sql, "case_insensitive"));
                if !ok {
                    return not(
                        "COLLATE other than case_sensitive or case_insensitive",
                        page::UNSUPPORTED_FEATURES,
                    );
                }
            }
            _ if PG_ONLY_FUNCTIONS.contains(&w.as_str())
                && t.get(i + 1).is_some_and(|n| n.punct(sql, "(")) =>
            {
                return Err(Refusal::new(
                    "42883",
                    format!("function {w} does not exist"),
                    page::UNSUPPORTED_FUNCTIONS,
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn unsupported_type(column: &str, ty: &str) -> Refusal {
    Refusal::new(
        "0A000",
        format!("Column \"{column}\" has unsupported type \"{ty}\""),
        page::UNSUPPORTED_TYPES,
    )
}

/// "Reserved words": a reserved word is a name only in double quotes. PostgreSQL refuses its
/// own reserved words; the ones only Redshift reserves are refused here wherever they are not
/// the keyword they are.
fn reserved_words(sql: &str, t: &[Token]) -> Result<(), Refusal> {
    // The depth of parentheses opened by CAST, for `CAST(x AS TIMESTAMP)`.
    let mut depth = 0usize;
    let mut casts: Vec<usize> = Vec::new();
    for (i, tok) in t.iter().enumerate() {
        if tok.punct(sql, "(") {
            depth += 1;
            if i > 0 && t[i - 1].is(sql, "CAST") {
                casts.push(depth);
            }
            continue;
        }
        if tok.punct(sql, ")") {
            if casts.last() == Some(&depth) {
                casts.pop();
            }
            depth = depth.saturating_sub(1);
            continue;
        }
        if tok.kind != Kind::Word || !redshift_only_reserved(tok.text(sql)) {
            continue;
        }
        let w = tok.text(sql).to_ascii_uppercase();
        let prev = i.checked_sub(1).map(|p| &t[p]);
        let next = t.get(i + 1);
        let prev_is = |s: &str| prev.is_some_and(|p| p.is(sql, s));
        let next_is = |s: &str| next.is_some_and(|n| n.is(sql, s));
        let next_punct = |s: &str| next.is_some_and(|n| n.punct(sql, s));
        let qualified = prev.is_some_and(|p| p.punct(sql, ".")) || next_punct(".");
        let in_cast = casts.last() == Some(&depth);
        let keyword = !qualified
            && match w.as_str() {
                "ENCODE" => next.is_some_and(|n| n.kind == Kind::Word),
                _ if ENCODINGS.contains(&w.as_str()) && prev_is("ENCODE") => true,
                "IDENTITY" => next_punct("(") || prev_is("AS"),
                "TIMESTAMP" => {
                    next.is_some_and(|n| matches!(n.kind, Kind::Str(_)))
                        || prev.is_some_and(|p| p.punct(sql, "::"))
                        || (prev_is("AS") && in_cast)
                        // a column's type: after its name, in a definition
                        || (prev.is_some_and(|p| matches!(p.kind, Kind::Word | Kind::Quoted(_)))
                            && !prev_is("AS")
                            && !prev.is_some_and(|p| is_reserved(p.text(sql)))
                            && next.is_none_or(|n| {
                                n.punct(sql, ",")
                                    || n.punct(sql, ")")
                                    || ["NOT", "NULL", "WITHOUT", "WITH", "DEFAULT", "ENCODE",
                                        "DISTKEY", "SORTKEY", "PRIMARY", "UNIQUE", "REFERENCES"]
                                        .iter()
                                        .any(|k| n.is(sql, k))
                            }))
                }
                "NULLS" => next_is("FIRST") || next_is("LAST"),
                // an operator: after a value or NOT, before one
                "BETWEEN" => {
                    prev.is_some_and(|p| {
                        matches!(
                            p.kind,
                            Kind::Word | Kind::Quoted(_) | Kind::Number | Kind::Str(_)
                        ) || p.punct(sql, ")")
                    }) && next.is_some_and(|n| !n.punct(sql, ",") && !n.punct(sql, ")"))
                }
                "IGNORE" | "RESPECT" => next_is("NULLS"),
                "PARTITION" => next_is("BY"),
                "WITHOUT" => next_is("TIME"),
                "OFFSET" => next.is_some_and(|n| n.kind == Kind::Number || n.punct(sql, "(")),
                "TOP" => {
                    (prev_is("SELECT") || prev_is("DISTINCT") || prev_is("ALL"))
                        && next.is_some_and(|n| n.kind == Kind::Number)
                }
                "MINUS" => next_is("SELECT") || next_punct("("),
                "INTERVAL" => next.is_some_and(|n| matches!(n.kind, Kind::Str(_))),
                "UNNEST" | "PIVOT" | "UNPIVOT" => next_punct("("),
                "SYSDATE" | "CURRENT_USER_ID" => {
                    // values, not names: never where a name is defined
                    !next.is_some_and(|n| {
                        matches!(n.kind, Kind::Word)
                            && !is_reserved(n.text(sql))
                            && !n.is(sql, "AS")
                    })
                }
                "LANGUAGE" => next.is_some_and(|n| n.kind == Kind::Word),
                "BACKUP" => next_is("YES") || next_is("NO"),
                _ => false,
            };
        if !keyword {
            return Err(Refusal::syntax(tok.text(sql), page::RESERVED));
        }
    }
    Ok(())
}

/// The statement with each string literal written as PostgreSQL reads it: Redshift's
/// literals take a backslash as an escape, PostgreSQL's standard ones do not.
fn literals(sql: &str, t: &[Token]) -> String {
    let mut edits = Edits::default();
    for tok in t {
        if let Kind::Str(v) = &tok.kind
            && tok.text(sql).starts_with('\'')
        {
            edits.replace(tok.span.clone(), pg_literal(v));
        }
    }
    edits.apply(sql)
}

/// `COPY … FROM 's3://…'` is Redshift's; `FROM STDIN`, `TO STDOUT` and server files are not.
fn copy_kind(sql: &str, t: &[Token]) -> Result<Action, Refusal> {
    let from = t.iter().position(|x| x.is(sql, "FROM"));
    match from.and_then(|f| t.get(f + 1)) {
        Some(Token {
            kind: Kind::Str(s), ..
        }) if s.starts_with("s3://") => Ok(Action::CopyS3(sql.to_owned())),
        Some(tok) if tok.is(sql, "STDIN") => Err(Refusal::new(
            "0A000",
            "COPY from STDIN is not supported",
            page::UNSUPPORTED_FEATURES,
        )),
        _ if t.iter().any(|x| x.is(sql, "TO")) => Err(Refusal::new(
            "0A000",
            "COPY TO is not supported; use UNLOAD",
            page::UNSUPPORTED_FEATURES,
        )),
        _ => Err(Refusal::new(
            "XX000",
            "COPY reads from Amazon S3 ('s3://bucket/prefix'), Amazon EMR, DynamoDB or SSH \
             only",
            page::COPY,
        )),
    }
}

/// The index of the `)` closing the `(` at `open`.
fn closing(sql: &str, t: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, tok) in t.iter().enumerate().skip(open) {
        if tok.punct(sql, "(") {
            depth += 1;
        } else if tok.punct(sql, ")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// The names between the parentheses at `open`, and the index after them.
fn name_list(sql: &str, t: &[Token], open: usize) -> Option<(Vec<String>, usize)> {
    if !t.get(open)?.punct(sql, "(") {
        return None;
    }
    let close = closing(sql, t, open)?;
    let names = t[open + 1..close]
        .iter()
        .filter(|x| matches!(x.kind, Kind::Word | Kind::Quoted(_)))
        .map(|x| name_of(sql, x))
        .collect();
    Some((names, close + 1))
}

/// A column's type, from `t[i]`: the PostgreSQL text for it and the index after it; for
/// character types, the width in bytes.
struct ColumnType {
    pg: String,
    bytes: Option<u32>,
    integer: bool,
    end: usize,
}

fn column_type(sql: &str, t: &[Token], i: usize, column: &str) -> Result<ColumnType, Refusal> {
    let Some(first) = t.get(i) else {
        return Err(Refusal::syntax("end of input", page::CREATE_TABLE));
    };
    let w = first.text(sql).to_ascii_lowercase();
    let word = |k: usize, s: &str| t.get(k).is_some_and(|x| x.is(sql, s));
    // (n) or (MAX) after the type's words
    let width = |k: usize| -> Result<Option<(Option<u32>, usize)>, Refusal> {
        if !t.get(k).is_some_and(|x| x.punct(sql, "(")) {
            return Ok(None);
        }
        let Some(n) = t.get(k + 1) else {
            return Err(Refusal::syntax("(", page::CHARACTER_TYPES));
        };
        if !t.get(k + 2).is_some_and(|x| x.punct(sql, ")")) {
            return Err(Refusal::syntax(n.text(sql), page::CHARACTER_TYPES));
        }
        if n.is(sql, "MAX") {
            return Ok(Some((None, k + 3)));
        }
        let v: u32 = n
            .text(sql)
            .parse()
            .map_err(|_| Refusal::syntax(n.text(sql), page::CHARACTER_TYPES))?;
        Ok(Some((Some(v), k + 3)))
    };
    let character = |name: &str, after: usize, max: u32| -> Result<ColumnType, Refusal> {
        let (n, end) = match width(after)? {
            Some((Some(n), end)) => (n, end),
            Some((None, end)) => (max, end),
            None => (DEFAULT_VARCHAR.min(max), after),
        };
        if n == 0 || n > max {
            return Err(Refusal::new(
                "22023",
                format!("length for type {name} cannot exceed {max}"),
                page::CHARACTER_TYPES,
            ));
        }
        let pg = if name == "char" {
            format!("CHAR({n})")
        } else {
            format!("VARCHAR({n})")
        };
        Ok(ColumnType {
            pg,
            bytes: Some(n),
            integer: false,
            end,
        })
    };
    let simple = |pg: &str, end: usize, integer: bool| ColumnType {
        pg: pg.to_owned(),
        bytes: None,
        integer,
        end,
    };
    Ok(match w.as_str() {
        "varchar" | "nvarchar" => character("varchar", i + 1, MAX_VARCHAR)?,
        "character" | "nchar" if word(i + 1, "varying") => {
            character("varchar", i + 2, MAX_VARCHAR)?
        }
        // TEXT and BPCHAR are VARCHAR(256) and CHAR(256) ("Character types").
        "text" => character("varchar", i + 1, MAX_VARCHAR)?,
        "char" | "character" | "nchar" | "bpchar" => character("char", i + 1, MAX_CHAR)?,
        "smallint" | "int2" => simple("SMALLINT", i + 1, true),
        "integer" | "int" | "int4" => simple("INTEGER", i + 1, true),
        "bigint" | "int8" => simple("BIGINT", i + 1, true),
        "real" | "float4" => simple("REAL", i + 1, false),
        "float8" => simple("DOUBLE PRECISION", i + 1, false),
        "float" => match width(i + 1)? {
            Some((_, end)) => simple("DOUBLE PRECISION", end, false),
            None => simple("DOUBLE PRECISION", i + 1, false),
        },
        "double" if word(i + 1, "precision") => simple("DOUBLE PRECISION", i + 2, false),
        "boolean" | "bool" => simple("BOOLEAN", i + 1, false),
        "date" => simple("DATE", i + 1, false),
        "timestamptz" => simple("TIMESTAMPTZ", i + 1, false),
        "timetz" => simple("TIMETZ", i + 1, false),
        "timestamp" | "time" => {
            let base = if w == "timestamp" {
                "TIMESTAMP"
            } else {
                "TIME"
            };
            if word(i + 1, "with") && word(i + 2, "time") && word(i + 3, "zone") {
                simple(&format!("{base} WITH TIME ZONE"), i + 4, false)
            } else if word(i + 1, "without") && word(i + 2, "time") && word(i + 3, "zone") {
                simple(base, i + 4, false)
            } else {
                simple(base, i + 1, false)
            }
        }
        "decimal" | "numeric" => {
            let end = match t.get(i + 1) {
                Some(x) if x.punct(sql, "(") => closing(sql, t, i + 1).map_or(i + 1, |c| c + 1),
                _ => i + 1,
            };
            simple(&sql[first.span.start..t[end - 1].span.end], end, false)
        }
        _ => return Err(unsupported_type(column, &w)),
    })
}

/// `CREATE [TEMP] TABLE [IF NOT EXISTS] name (…) [attributes]` ("CREATE TABLE").
fn create_table(sql: &str, t: &[Token], mut i: usize) -> Result<Action, Refusal> {
    let word = |k: usize, s: &str| t.get(k).is_some_and(|x| x.is(sql, s));
    let mut meta = TableMeta {
        diststyle: String::new(),
        sortkind: "COMPOUND".into(),
        ..TableMeta::default()
    };
    if word(i, "IF") && word(i + 1, "NOT") && word(i + 2, "EXISTS") {
        meta.if_not_exists = true;
        i += 3;
    }
    let Some(name) = t.get(i) else {
        return Err(Refusal::syntax("end of input", page::CREATE_TABLE));
    };
    meta.table = name_of(sql, name);
    i += 1;
    while t.get(i).is_some_and(|x| x.punct(sql, ".")) {
        meta.table = name_of(sql, &t[i + 1]);
        i += 2;
    }
    let mut edits = Edits::default();
    let mut columns: Vec<String> = Vec::new();
    let mut distkeys: Vec<String> = Vec::new();
    if t.get(i).is_some_and(|x| x.punct(sql, "(")) {
        let close = closing(sql, t, i).ok_or_else(|| Refusal::syntax("(", page::CREATE_TABLE))?;
        // Each element: from after `(` or a top-level `,` to the next.
        let mut start = i + 1;
        let mut k = i + 1;
        let mut depth = 0;
        while k <= close {
            let tok = &t[k];
            if tok.punct(sql, "(") {
                depth += 1;
            } else if tok.punct(sql, ")") && depth > 0 {
                depth -= 1;
            } else if depth == 0 && (tok.punct(sql, ",") || k == close) {
                element(
                    sql,
                    t,
                    start,
                    k,
                    &mut meta,
                    &mut columns,
                    &mut distkeys,
                    &mut edits,
                )?;
                start = k + 1;
            }
            k += 1;
        }
        i = close + 1;
    }
    // Table attributes, up to the end or `AS` (CREATE TABLE AS).
    let attrs_start = i;
    while i < t.len() && !word(i, "AS") {
        let tok = &t[i];
        if tok.is(sql, "DISTSTYLE") {
            let style = t
                .get(i + 1)
                .map(|x| x.text(sql).to_ascii_uppercase())
                .unwrap_or_default();
            if !["AUTO", "EVEN", "KEY", "ALL"].contains(&style.as_str()) {
                return Err(Refusal::syntax(&style, page::CREATE_TABLE));
            }
            meta.diststyle = style;
            i += 2;
        } else if tok.is(sql, "DISTKEY") {
            let (names, next) = name_list(sql, t, i + 1)
                .ok_or_else(|| Refusal::syntax("DISTKEY", page::CREATE_TABLE))?;
            if names.len() != 1 {
                return Err(Refusal::new(
                    "42601",
                    "only one column can be the distribution key",
                    page::CREATE_TABLE,
                ));
            }
            distkeys.extend(names);
            i = next;
        } else if tok.is(sql, "COMPOUND") || tok.is(sql, "INTERLEAVED") || tok.is(sql, "SORTKEY") {
            if !tok.is(sql, "SORTKEY") {
                meta.sortkind = tok.text(sql).to_ascii_uppercase();
                i += 1;
            }
            if !word(i, "SORTKEY") {
                return Err(Refusal::syntax(tok.text(sql), page::CREATE_TABLE));
            }
            if word(i + 1, "AUTO") {
                i += 2;
                continue;
            }
            let (names, next) = name_list(sql, t, i + 1)
                .ok_or_else(|| Refusal::syntax("SORTKEY", page::CREATE_TABLE))?;
            let max = if meta.sortkind == "INTERLEAVED" {
                8
            } else {
                400
            };
            if names.is_empty() || names.len() > max {
                return Err(Refusal::new(
                    "42601",
                    format!(
                        "a {} sort key has 1 to {max} columns",
                        meta.sortkind.to_lowercase()
                    ),
                    page::CREATE_TABLE,
                ));
            }
            if !meta.sortkey.is_empty() {
                return Err(Refusal::new(
                    "42601",
                    "a table has one sort key",
                    page::CREATE_TABLE,
                ));
            }
            meta.sortkey = names;
            i = next;
        } else if tok.is(sql, "ENCODE") {
            if !word(i + 1, "AUTO") {
                return Err(Refusal::syntax(
                    t.get(i + 1).map_or("ENCODE", |x| x.text(sql)),
                    page::CREATE_TABLE,
                ));
            }
            meta.encode_auto = true;
            i += 2;
        } else if tok.is(sql, "BACKUP") && (word(i + 1, "YES") || word(i + 1, "NO")) {
            i += 2;
        } else {
            return Err(Refusal::syntax(tok.text(sql), page::CREATE_TABLE));
        }
    }
    if let (Some(first), Some(last)) = (t.get(attrs_start), t.get(i.saturating_sub(1)))
        && i > attrs_start
    {
        edits.replace(first.span.start..last.span.end, "");
    }
    // "CREATE TABLE": one distribution key; DISTSTYLE KEY needs it, no other style takes it.
    if distkeys.len() > 1 {
        return Err(Refusal::new(
            "42601",
            "only one column can be the distribution key",
            page::CREATE_TABLE,
        ));
    }
    meta.distkey = distkeys.pop();
    match (meta.diststyle.as_str(), &meta.distkey) {
        ("", Some(_)) => meta.diststyle = "KEY".into(),
        ("", None) => meta.diststyle = "AUTO".into(),
        ("KEY", None) => {
            return Err(Refusal::new(
                "42601",
                "DISTSTYLE KEY needs a DISTKEY column",
                page::CREATE_TABLE,
            ));
        }
        (style, Some(_)) if style != "KEY" => {
            return Err(Refusal::new(
                "42601",
                format!("DISTKEY cannot be given with DISTSTYLE {style}"),
                page::CREATE_TABLE,
            ));
        }
        _ => {}
    }
    if !columns.is_empty() {
        for key in meta.distkey.iter().chain(&meta.sortkey) {
            if !columns.contains(key) {
                return Err(Refusal::new(
                    "42703",
                    format!("column \"{key}\" named in a key does not exist"),
                    page::CREATE_TABLE,
                ));
            }
        }
    }
    for tok in t {
        if let Kind::Str(v) = &tok.kind {
            edits.replace(tok.span.clone(), pg_literal(v));
        }
    }
    Ok(Action::Create {
        sql: edits.apply(sql),
        meta,
    })
}

/// One element of a table's definition, `t[start..end]`: a column (its type made
/// PostgreSQL's, its keys and encoding taken out and recorded) or a table constraint.
#[allow(clippy::too_many_arguments)]
fn element(
    sql: &str,
    t: &[Token],
    start: usize,
    end: usize,
    meta: &mut TableMeta,
    columns: &mut Vec<String>,
    distkeys: &mut Vec<String>,
    edits: &mut Edits,
) -> Result<(), Refusal> {
    let Some(first) = t.get(start).filter(|_| start < end) else {
        return Err(Refusal::syntax(",", page::CREATE_TABLE));
    };
    if [
        "PRIMARY",
        "UNIQUE",
        "FOREIGN",
        "CONSTRAINT",
        "CHECK",
        "LIKE",
    ]
    .iter()
    .any(|k| first.is(sql, k))
    {
        return Ok(());
    }
    let column = name_of(sql, first);
    columns.push(column.clone());
    let ty = column_type(sql, t, start + 1, &format!("{}.{column}", meta.table))?;
    let mut replacement = ty.pg.clone();
    if let Some(n) = ty.bytes {
        // VARCHAR(n) holds n bytes ("Character types"); PostgreSQL's counts characters.
        replacement.push_str(&byte_check(&column, n));
    }
    let mut k = ty.end;
    let mut identity = None;
    while k < end {
        let tok = &t[k];
        if tok.is(sql, "ENCODE") {
            let enc = t
                .get(k + 1)
                .map(|x| x.text(sql).to_ascii_uppercase())
                .unwrap_or_default();
            if !ENCODINGS.contains(&enc.as_str()) {
                return Err(Refusal::new(
                    "42704",
                    format!("invalid encoding type specified for column \"{column}\""),
                    page::CREATE_TABLE,
                ));
            }
            meta.encodings.push((column.clone(), enc));
            edits.replace(tok.span.start..t[k + 1].span.end, "");
            k += 2;
        } else if tok.is(sql, "DISTKEY") {
            distkeys.push(column.clone());
            edits.replace(tok.span.clone(), "");
            k += 1;
        } else if tok.is(sql, "SORTKEY") {
            // Column SORTKEYs make one compound key, in the columns' order.
            if !meta.sortkey.contains(&column) {
                meta.sortkey.push(column.clone());
            }
            edits.replace(tok.span.clone(), "");
            k += 1;
        } else if tok.is(sql, "IDENTITY") {
            // IDENTITY(seed, step), on INT or BIGINT ("CREATE TABLE").
            let open = k + 1;
            let close =
                closing(sql, t, open).filter(|_| t.get(open).is_some_and(|x| x.punct(sql, "(")));
            let Some(close) = close else {
                return Err(Refusal::syntax("IDENTITY", page::CREATE_TABLE));
            };
            let nums: Vec<&str> = t[open + 1..close]
                .iter()
                .filter(|x| x.kind == Kind::Number || x.punct(sql, "-"))
                .map(|x| x.text(sql))
                .collect();
            let nums = nums.join(" ").replace("- ", "-");
            let parts: Vec<&str> = nums.split_whitespace().collect();
            let [seed, step] = parts.as_slice() else {
                return Err(Refusal::syntax("IDENTITY", page::CREATE_TABLE));
            };
            if !ty.integer {
                return Err(Refusal::new(
                    "42601",
                    format!("IDENTITY column \"{column}\" must be INT or BIGINT"),
                    page::CREATE_TABLE,
                ));
            }
            identity = Some(format!(
                " GENERATED ALWAYS AS IDENTITY (START WITH {seed} INCREMENT BY {step} MINVALUE {})",
                seed.parse::<i64>().unwrap_or(0).min(1)
            ));
            edits.replace(tok.span.start..t[close].span.end, "");
            k = close + 1;
        } else if tok.is(sql, "COLLATE") {
            edits.replace(tok.span.start..t[k + 1].span.end, "");
            k += 2;
        } else {
            k += 1;
        }
    }
    if let Some(identity) = identity {
        replacement.push_str(&identity);
    }
    let ty_first = &t[start + 1];
    let ty_last = &t[ty.end - 1];
    edits.replace(ty_first.span.start..ty_last.span.end, replacement);
    Ok(())
}

/// The name of the constraint that holds a column to its width in bytes: `rs_bytes_N_column`
/// (the width in it, for the error that names it).
pub fn byte_check_name(column: &str, n: u32) -> String {
    format!("rs_bytes_{n}_{column}")
}

/// The width a [`byte_check_name`] holds its column to.
pub fn byte_check_width(constraint: &str) -> Option<u32> {
    constraint
        .strip_prefix("rs_bytes_")?
        .split('_')
        .next()?
        .parse()
        .ok()
}

/// ` CONSTRAINT rs_bytes_n_c CHECK (octet_length(c) <= n)`.
pub fn byte_check(column: &str, n: u32) -> String {
    format!(
        " CONSTRAINT {} CHECK (octet_length({}) <= {n})",
        pg_ident(&byte_check_name(column, n)),
        pg_ident(column)
    )
}

/// `ALTER TABLE`: `ALTER COLUMN … TYPE` is checked before it runs; `ADD COLUMN` gets the
/// types' rules; other forms run as they are.
fn alter_table(sql: &str, t: &[Token]) -> Result<Action, Refusal> {
    let word = |k: usize, s: &str| t.get(k).is_some_and(|x| x.is(sql, s));
    let mut i = 2;
    if word(i, "IF") && word(i + 1, "EXISTS") {
        i += 2;
    }
    let Some(name) = t.get(i) else {
        return Err(Refusal::syntax("end of input", page::ALTER_TABLE));
    };
    let mut table = name_of(sql, name);
    i += 1;
    while t.get(i).is_some_and(|x| x.punct(sql, ".")) {
        table = name_of(sql, &t[i + 1]);
        i += 2;
    }
    if word(i, "ALTER") {
        let c = if word(i + 1, "COLUMN") { i + 2 } else { i + 1 };
        let Some(col) = t.get(c) else {
            return Err(Refusal::syntax("end of input", page::ALTER_TABLE));
        };
        let column = name_of(sql, col);
        let ty_at = if word(c + 1, "SET") && word(c + 2, "DATA") && word(c + 3, "TYPE") {
            c + 4
        } else if word(c + 1, "TYPE") {
            c + 2
        } else {
            return Err(Refusal::new(
                "0A000",
                "ALTER COLUMN supports TYPE and ENCODE only",
                page::ALTER_TABLE,
            ));
        };
        // Only a VARCHAR column's length ("ALTER TABLE", ALTER COLUMN column_name TYPE).
        let ty = column_type(sql, t, ty_at, &format!("{table}.{column}"))?;
        let is_varchar = t[ty_at].is(sql, "VARCHAR")
            || t[ty_at].is(sql, "NVARCHAR")
            || (t[ty_at].is(sql, "CHARACTER") && word(ty_at + 1, "VARYING"));
        if !is_varchar || ty.end != t.len() {
            return Err(Refusal::new(
                "0A000",
                format!(
                    "target data type \"{}\" is not supported: ALTER COLUMN TYPE changes the \
                     length of a VARCHAR column only",
                    ty.pg
                ),
                page::ALTER_TABLE,
            ));
        }
        return Ok(Action::AlterType {
            table,
            column,
            width: ty.bytes.unwrap_or(DEFAULT_VARCHAR),
        });
    }
    if word(i, "ADD") {
        let c = if word(i + 1, "COLUMN") { i + 2 } else { i + 1 };
        if let Some(col) = t.get(c).filter(|x| {
            !["PRIMARY", "UNIQUE", "FOREIGN", "CONSTRAINT", "CHECK"]
                .iter()
                .any(|k| x.is(sql, k))
        }) {
            let column = name_of(sql, col);
            let ty = column_type(sql, t, c + 1, &format!("{table}.{column}"))?;
            let mut edits = Edits::default();
            let mut replacement = ty.pg.clone();
            if let Some(n) = ty.bytes {
                replacement.push_str(&byte_check(&column, n));
            }
            edits.replace(t[c + 1].span.start..t[ty.end - 1].span.end, replacement);
            return Ok(Action::Run(edits.apply(sql)));
        }
    }
    Ok(Action::Run(literals(sql, t)))
}

/// `sql` with each call `name()` replaced by `value` (the session's copy id and count).
pub fn replace_calls(sql: &str, calls: &[(&str, String)]) -> String {
    let Ok(t) = lex::tokens(sql) else {
        return sql.to_owned();
    };
    let mut edits = Edits::default();
    for (i, tok) in t.iter().enumerate() {
        for (name, value) in calls {
            if tok.is(sql, name)
                && t.get(i + 1).is_some_and(|x| x.punct(sql, "("))
                && t.get(i + 2).is_some_and(|x| x.punct(sql, ")"))
            {
                edits.replace(tok.span.start..t[i + 2].span.end, value.clone());
            }
        }
    }
    edits.apply(sql)
}

/// Whether `sql` names any of `names` (unquoted or quoted), outside literals.
pub fn names_any(sql: &str, names: &[&str]) -> Vec<String> {
    let Ok(t) = lex::tokens(sql) else {
        return Vec::new();
    };
    let mut found: Vec<String> = Vec::new();
    for tok in &t {
        if matches!(tok.kind, Kind::Word | Kind::Quoted(_)) {
            let n = name_of(sql, tok);
            if names.contains(&n.as_str()) && !found.contains(&n) {
                found.push(n);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> Refusal {
        check(sql).expect_err(sql)
    }

    #[test]
    fn a_reserved_word_is_a_name_only_when_quoted() {
        let r = refused("CREATE TABLE load_errors (source VARCHAR(10), raw VARCHAR(2048))");
        assert_eq!(r.message, "syntax error at or near \"raw\"");
        assert_eq!(r.page, page::RESERVED);
        assert!(check("CREATE TABLE e (\"raw\" VARCHAR(10) ENCODE raw)").is_ok());
        refused("SELECT e.open FROM e");
        refused("SELECT tag FROM e");
        assert!(check("SELECT ts, CAST(x AS TIMESTAMP), TIMESTAMP '2018-11-01 00:00:00' FROM e ORDER BY ts DESC NULLS LAST LIMIT 3 OFFSET 2").is_ok());
        assert!(check("CREATE TABLE t (ts TIMESTAMP NOT NULL, id BIGINT IDENTITY(0,1))").is_ok());
        assert!(
            check("SELECT 1 FROM t WHERE weekday NOT BETWEEN 1 AND 7 OR (x) BETWEEN 2 AND 3")
                .is_ok()
        );
        refused("CREATE TABLE t (between INTEGER)");
        refused("CREATE TABLE t (timestamp TIMESTAMP)");
    }

    #[test]
    fn character_types_count_bytes_and_have_limits() {
        let Action::Create { sql, meta } =
            check("CREATE TABLE t (a VARCHAR(16), b TEXT, c INTEGER) DISTSTYLE KEY DISTKEY (a) SORTKEY (c) ENCODE AUTO").unwrap()
        else {
            panic!()
        };
        assert!(
            sql.contains(
                "VARCHAR(16) CONSTRAINT \"rs_bytes_16_a\" CHECK (octet_length(\"a\") <= 16)"
            ),
            "{sql}"
        );
        assert!(
            sql.contains("VARCHAR(256) CONSTRAINT \"rs_bytes_256_b\""),
            "{sql}"
        );
        assert!(
            !sql.contains("DISTSTYLE") && !sql.contains("ENCODE"),
            "{sql}"
        );
        assert_eq!(meta.distkey.as_deref(), Some("a"));
        assert_eq!(meta.sortkey, ["c"]);
        assert!(meta.encode_auto);
        assert_eq!(refused("CREATE TABLE t (a VARCHAR(65536))").code, "22023");
        assert_eq!(
            refused("CREATE TABLE t (a JSONB)").page,
            page::UNSUPPORTED_TYPES
        );
        assert_eq!(
            refused("CREATE TABLE t (a SERIAL)").page,
            page::UNSUPPORTED_TYPES
        );
        assert_eq!(
            refused("CREATE TABLE t (a INTEGER[])").page,
            page::UNSUPPORTED_TYPES
        );
        refused("CREATE TABLE t (a INTEGER, b INTEGER DISTKEY) DISTKEY (a)");
        refused("CREATE TABLE t (a INTEGER) DISTKEY (b)");
        refused("CREATE TABLE t (a INTEGER) DISTSTYLE KEY");
        refused("CREATE TABLE t (a INTEGER) DISTSTYLE EVEN DISTKEY (a)");
    }

    #[test]
    fn what_postgresql_has_and_redshift_does_not_is_refused() {
        for sql in [
            "CREATE INDEX i ON t (a)",
            "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
            "INSERT INTO t VALUES (1) RETURNING a",
            "SELECT DISTINCT ON (a) a FROM t",
            "SELECT pg_advisory_xact_lock(1, 2)",
            "SET LOCAL lock_timeout = '1s'",
            "COPY t FROM STDIN",
            "SELECT a COLLATE \"C\" FROM t",
        ] {
            refused(sql);
        }
    }

    #[test]
    fn alter_column_type_is_for_varchar_only() {
        assert_eq!(
            check("ALTER TABLE s ALTER COLUMN title TYPE VARCHAR(1024)").unwrap(),
            Action::AlterType {
                table: "s".into(),
                column: "title".into(),
                width: 1024
            }
        );
        refused("ALTER TABLE s ALTER COLUMN n TYPE BIGINT");
    }

    #[test]
    fn literals_lose_redshifts_backslash_escapes() {
        assert_eq!(
            check(r"SELECT 'a\\b', 'it''s'").unwrap(),
            Action::Run(r"SELECT 'a\b', 'it''s'".into())
        );
        assert_eq!(
            replace_calls(
                "SELECT pg_last_copy_id(), 1",
                &[("pg_last_copy_id", "7".into())]
            ),
            "SELECT 7, 1"
        );
    }
}
