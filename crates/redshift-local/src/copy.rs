//! `COPY … FROM 's3://…'`: its parameters checked as Redshift checks them ("COPY", "COPY:
//! Data load parameters", "Data format parameters", "Data conversion parameters", "COPY from
//! columnar data formats"), and its input turned into rows or into load errors with the
//! codes of the "Load error reference".

use crate::json::{self, Value};
use crate::lex::{self, Kind, Token};
use crate::rules::{Refusal, name_of, page};

/// The most `MAXERROR` takes ("COPY: Data load parameters").
pub const MAXERROR_LIMIT: u64 = 100_000;

/// How the input is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `FORMAT AS JSON 'auto'` (`ignorecase`: `'auto ignorecase'`).
    JsonAuto {
        ignorecase: bool,
    },
    /// `FORMAT AS JSON 's3://…jsonpaths'`.
    JsonPaths(String),
    Parquet,
}

/// How epoch or text times are read into `TIMESTAMP` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// `YYYY-MM-DD HH:MI:SS`, the default.
    Default,
    Auto,
    EpochSecs,
    EpochMillisecs,
}

/// A parsed `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub table: String,
    pub columns: Option<Vec<String>>,
    pub from: String,
    pub format: Format,
    pub timeformat: TimeFormat,
    pub max_error: u64,
    pub manifest: bool,
    pub region: Option<String>,
    pub statupdate: Option<bool>,
    pub compupdate: Option<bool>,
}

fn bad(message: impl Into<String>, page: &'static str) -> Refusal {
    Refusal::new("XX000", message, page)
}

/// Parses a `COPY` statement.
pub fn parse(sql: &str) -> Result<Copy, Refusal> {
    let t =
        lex::tokens(sql).map_err(|_| Refusal::new("42601", "unterminated literal", page::COPY))?;
    let word = |i: usize, w: &str| t.get(i).is_some_and(|x| x.is(sql, w));
    let s = |i: usize| match t.get(i).map(|x| &x.kind) {
        Some(Kind::Str(v)) => Some(v.clone()),
        _ => None,
    };
    let mut i = 1;
    let Some(name) = t.get(i) else {
        return Err(Refusal::new(
            "42601",
            "syntax error at end of input",
            page::COPY,
        ));
    };
    let mut table = name_of(sql, name);
    i += 1;
    while t.get(i).is_some_and(|x| x.punct(sql, ".")) {
        table = name_of(sql, &t[i + 1]);
        i += 2;
    }
    let mut columns = None;
    if t.get(i).is_some_and(|x| x.punct(sql, "(")) {
        let mut cols = Vec::new();
        i += 1;
        while let Some(tok) = t.get(i) {
            i += 1;
            if tok.punct(sql, ")") {
                break;
            }
            if matches!(tok.kind, Kind::Word | Kind::Quoted(_)) {
                cols.push(name_of(sql, tok));
            }
        }
        columns = Some(cols);
    }
    if !word(i, "FROM") {
        return Err(syntax_at(sql, &t, i));
    }
    let from = s(i + 1).ok_or_else(|| syntax_at(sql, &t, i + 1))?;
    if !from.starts_with("s3://") || from.len() <= 5 {
        return Err(bad(format!("Invalid S3 location '{from}'"), page::COPY));
    }
    i += 2;
    let mut copy = Copy {
        table,
        columns,
        from,
        format: Format::JsonAuto { ignorecase: false },
        timeformat: TimeFormat::Default,
        max_error: 0,
        manifest: false,
        region: None,
        statupdate: None,
        compupdate: None,
    };
    let mut format_given = None::<&str>;
    let mut credentials = false;
    let mut given: Vec<String> = Vec::new();
    let skip_as = |i: &mut usize| {
        if t.get(*i).is_some_and(|x| x.is(sql, "AS")) {
            *i += 1;
        }
    };
    while i < t.len() {
        let tok = &t[i];
        if tok.kind != Kind::Word {
            return Err(syntax_at(sql, &t, i));
        }
        let option = tok.text(sql).to_ascii_uppercase();
        if given.contains(&option) {
            return Err(bad(
                format!("conflicting or redundant options: {option}"),
                page::COPY,
            ));
        }
        given.push(option.clone());
        i += 1;
        match option.as_str() {
            "IAM_ROLE" => {
                if word(i, "DEFAULT") {
                    i += 1;
                } else {
                    let arns = s(i).ok_or_else(|| syntax_at(sql, &t, i))?;
                    for arn in arns.split(',') {
                        if !valid_role_arn(arn) {
                            return Err(bad(
                                format!(
                                    "IAM_ROLE must be a role's ARN, \
                                     arn:aws:iam::<account>:role/<name>; got '{arn}'"
                                ),
                                page::COPY,
                            ));
                        }
                    }
                    i += 1;
                }
                credentials = true;
            }
            "CREDENTIALS" => {
                skip_as(&mut i);
                s(i).ok_or_else(|| syntax_at(sql, &t, i))?;
                i += 1;
                credentials = true;
            }
            "REGION" => {
                skip_as(&mut i);
                copy.region = Some(s(i).ok_or_else(|| syntax_at(sql, &t, i))?);
                i += 1;
            }
            "FORMAT" | "JSON" | "PARQUET" => {
                if option == "FORMAT" {
                    skip_as(&mut i);
                    let Some(f) = t.get(i).filter(|x| x.kind == Kind::Word) else {
                        return Err(syntax_at(sql, &t, i));
                    };
                    let f = f.text(sql).to_ascii_uppercase();
                    i += 1;
                    match f.as_str() {
                        "JSON" => format_given = Some("JSON"),
                        "PARQUET" => format_given = Some("PARQUET"),
                        other => {
                            return Err(bad(
                                format!(
                                    "FORMAT {other} is not emulated here: JSON and PARQUET are"
                                ),
                                page::COPY,
                            ));
                        }
                    }
                } else {
                    format_given = Some(if option == "JSON" { "JSON" } else { "PARQUET" });
                }
                if format_given == Some("JSON") {
                    skip_as(&mut i);
                    copy.format = match s(i) {
                        None => Format::JsonAuto { ignorecase: false },
                        Some(v) => {
                            i += 1;
                            match v.as_str() {
                                "auto" => Format::JsonAuto { ignorecase: false },
                                "auto ignorecase" => Format::JsonAuto { ignorecase: true },
                                p if p.starts_with("s3://") => Format::JsonPaths(p.to_owned()),
                                other => {
                                    return Err(bad(
                                        format!(
                                            "Invalid JSON option '{other}': 'auto', 'auto \
                                             ignorecase' or the s3:// path of a JSONPaths file"
                                        ),
                                        page::COPY_JSON,
                                    ));
                                }
                            }
                        }
                    };
                } else {
                    copy.format = Format::Parquet;
                }
            }
            "TIMEFORMAT" => {
                skip_as(&mut i);
                let v = s(i).ok_or_else(|| syntax_at(sql, &t, i))?;
                i += 1;
                // The keywords are case-sensitive ("Data conversion parameters").
                copy.timeformat = match v.as_str() {
                    "auto" => TimeFormat::Auto,
                    "epochsecs" => TimeFormat::EpochSecs,
                    "epochmillisecs" => TimeFormat::EpochMillisecs,
                    "YYYY-MM-DD HH:MI:SS" => TimeFormat::Default,
                    other => {
                        return Err(bad(
                            format!(
                                "TIMEFORMAT '{other}' is not emulated here: 'auto', \
                                 'epochsecs', 'epochmillisecs' or the default"
                            ),
                            page::COPY_PARAMETERS,
                        ));
                    }
                };
            }
            "MAXERROR" => {
                skip_as(&mut i);
                let n = t
                    .get(i)
                    .filter(|x| x.kind == Kind::Number)
                    .and_then(|x| x.text(sql).parse::<u64>().ok())
                    .ok_or_else(|| syntax_at(sql, &t, i))?;
                if n > MAXERROR_LIMIT {
                    return Err(bad(
                        format!("MAXERROR {n} is more than its limit, {MAXERROR_LIMIT}"),
                        page::COPY_PARAMETERS,
                    ));
                }
                copy.max_error = n;
                i += 1;
            }
            "MANIFEST" => copy.manifest = true,
            "COMPUPDATE" | "STATUPDATE" => {
                let v = t.get(i).map(|x| x.text(sql).to_ascii_uppercase());
                let on = match v.as_deref() {
                    Some("ON" | "TRUE") => {
                        i += 1;
                        true
                    }
                    Some("OFF" | "FALSE") => {
                        i += 1;
                        false
                    }
                    Some("PRESET") if option == "COMPUPDATE" => {
                        i += 1;
                        true
                    }
                    _ => true,
                };
                if option == "COMPUPDATE" {
                    copy.compupdate = Some(on);
                } else {
                    copy.statupdate = Some(on);
                }
            }
            other => {
                return Err(bad(
                    format!("COPY parameter {other} is not known or not emulated here"),
                    page::COPY_PARAMETERS,
                ));
            }
        }
    }
    if !credentials {
        return Err(bad(
            "Missing credentials: give IAM_ROLE 'arn:aws:iam::<account>:role/<name>' or \
             CREDENTIALS",
            page::COPY,
        ));
    }
    match format_given {
        None => {
            return Err(bad(
                "COPY without FORMAT reads pipe-delimited text, which is not emulated here: \
                 give FORMAT AS JSON or FORMAT AS PARQUET",
                page::COPY,
            ));
        }
        // Only these parameters go with a columnar format ("COPY from columnar data formats").
        Some("PARQUET") => {
            let allowed = [
                "IAM_ROLE",
                "CREDENTIALS",
                "FORMAT",
                "PARQUET",
                "STATUPDATE",
                "MANIFEST",
                "ACCEPTINVCHARS",
                "FILLRECORD",
                "EXPLICIT_IDS",
            ];
            if let Some(o) = given.iter().find(|o| !allowed.contains(&o.as_str())) {
                return Err(bad(
                    format!("{o} is not supported with COPY from the PARQUET format"),
                    page::COPY_COLUMNAR,
                ));
            }
        }
        _ => {}
    }
    Ok(copy)
}

fn syntax_at(sql: &str, t: &[Token], i: usize) -> Refusal {
    match t.get(i) {
        Some(tok) => Refusal::new(
            "42601",
            format!("syntax error at or near \"{}\"", tok.text(sql)),
            page::COPY,
        ),
        None => Refusal::new("42601", "syntax error at end of input", page::COPY),
    }
}

/// `arn:aws:iam::123456789012:role/name`.
fn valid_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws:iam::") else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return false;
    };
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !role.is_empty()
}

/// A target column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColType {
    Varchar(u32),
    Char(u32),
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Numeric,
    Boolean,
    Date,
    Timestamp,
    TimestampTz,
    Other(String),
}

impl ColType {
    /// From PostgreSQL's type name and modifier.
    pub fn from_pg(typname: &str, typmod: i32) -> ColType {
        match typname {
            "varchar" => ColType::Varchar((typmod - 4).max(0) as u32),
            "bpchar" => ColType::Char((typmod - 4).max(0) as u32),
            "int2" => ColType::SmallInt,
            "int4" => ColType::Integer,
            "int8" => ColType::BigInt,
            "float4" => ColType::Real,
            "float8" => ColType::Double,
            "numeric" => ColType::Numeric,
            "bool" => ColType::Boolean,
            "date" => ColType::Date,
            "timestamp" => ColType::Timestamp,
            "timestamptz" => ColType::TimestampTz,
            other => ColType::Other(other.to_owned()),
        }
    }

    /// As `stl_load_errors.type` says it.
    pub fn name(&self) -> String {
        match self {
            ColType::Varchar(_) => "varchar".into(),
            ColType::Char(_) => "char".into(),
            ColType::SmallInt => "int2".into(),
            ColType::Integer => "int4".into(),
            ColType::BigInt => "int8".into(),
            ColType::Real => "float4".into(),
            ColType::Double => "float8".into(),
            ColType::Numeric => "numeric".into(),
            ColType::Boolean => "bool".into(),
            ColType::Date => "date".into(),
            ColType::Timestamp => "timestamp".into(),
            ColType::TimestampTz => "timestamptz".into(),
            ColType::Other(o) => o.clone(),
        }
    }

    pub fn length(&self) -> Option<u32> {
        match self {
            ColType::Varchar(n) | ColType::Char(n) => Some(*n),
            _ => None,
        }
    }
}

/// A column of the target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
    pub not_null: bool,
    pub identity: bool,
}

/// One record COPY could not load ("Load error reference"; a row of `stl_load_errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: i64,
    pub column: String,
    pub col_type: String,
    pub col_length: String,
    pub position: i32,
    pub raw_line: String,
    pub raw_field_value: String,
    pub code: i32,
    pub reason: String,
}

/// The rows a file gives, as PostgreSQL's `COPY` text lines, and its load errors.
#[derive(Debug, Default)]
pub struct Decoded {
    pub lines: Vec<u8>,
    pub rows: u64,
    pub errors: Vec<LoadError>,
}

/// A JSONPath of a JSONPaths file: the keys and indexes from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Reads a JSONPaths file ("Data format parameters": one object whose `jsonpaths` is an
/// array of strings; anything else fails the COPY).
pub fn jsonpaths(data: &[u8]) -> Result<Option<Vec<Vec<Step>>>, String> {
    let mut values = json::Stream::new(data);
    let Some((_, Ok(Value::Object(fields)))) = values.next() else {
        return Err("the JSONPaths file is not one JSON object".into());
    };
    if values.next().is_some() {
        return Err("the JSONPaths file holds more than one JSON object".into());
    }
    let Some((key, paths)) = fields.into_iter().next() else {
        return Err("the JSONPaths file is an empty object".into());
    };
    // Any other name than "jsonpaths" means 'auto' ("Data format parameters").
    if key != "jsonpaths" {
        return Ok(None);
    }
    let Value::Array(paths) = paths else {
        return Err("jsonpaths is not an array".into());
    };
    paths
        .into_iter()
        .map(|p| match p {
            Value::String(s) if !s.is_empty() => parse_path(&s),
            _ => Err("an element of jsonpaths is empty or not a string".into()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `$['a']['b'][0]` or `$.a.b[0]`.
fn parse_path(p: &str) -> Result<Vec<Step>, String> {
    let invalid = || format!("Invalid JSONPath format: {p}");
    let mut rest = p.strip_prefix('$').ok_or_else(invalid)?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").ok_or_else(invalid)?;
            steps.push(Step::Key(r[..end].to_owned()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix("[\"") {
            let end = r.find("\"]").ok_or_else(invalid)?;
            steps.push(Step::Key(r[..end].to_owned()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(invalid)?;
            steps.push(Step::Index(r[..end].trim().parse().map_err(|_| invalid())?));
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(invalid());
            }
            steps.push(Step::Key(r[..end].to_owned()));
            rest = &r[end..];
        } else {
            return Err(invalid());
        }
    }
    Ok(steps)
}

fn follow<'v>(v: &'v Value, path: &[Step]) -> Result<Option<&'v Value>, String> {
    let mut at = v;
    for step in path {
        at = match (step, at) {
            (Step::Key(k), Value::Object(fields)) => {
                match fields.iter().rev().find(|(name, _)| name == k) {
                    Some((_, v)) => v,
                    None => return Ok(None),
                }
            }
            (Step::Index(n), Value::Array(items)) => match items.get(*n) {
                Some(v) => v,
                None => {
                    return Err(
                        "Invalid JSONPath format: Not an array or index out of range.".into(),
                    );
                }
            },
            (Step::Index(_), _) => {
                return Err("Invalid JSONPath format: Not an array or index out of range.".into());
            }
            _ => return Ok(None),
        };
    }
    Ok(Some(at))
}

/// How one JSON file's records map to the columns.
#[derive(Debug)]
pub enum Mapping<'a> {
    Auto { ignorecase: bool },
    Paths(&'a [Vec<Step>]),
}

/// Decodes one JSON file into `COPY` text lines for `columns` (the COPY's, in order).
pub fn decode_json(
    file: &str,
    data: &[u8],
    columns: &[Column],
    mapping: &Mapping<'_>,
    timeformat: TimeFormat,
) -> Decoded {
    let mut out = Decoded::default();
    for (range, value) in json::Stream::new(data) {
        // The last line of the object is the one named ("STL_LOAD_ERRORS", line_number).
        let line = json::line_of(data, range.end.saturating_sub(1)) as i64;
        let raw = String::from_utf8_lossy(&data[range.clone()]);
        let raw_line: String = raw.chars().take(1024).collect();
        let error = |column: &Column, code: i32, reason: String, field: &str| LoadError {
            file: file.to_owned(),
            line,
            column: column.name.clone(),
            col_type: column.ty.name(),
            col_length: column
                .ty
                .length()
                .map(|n| n.to_string())
                .unwrap_or_default(),
            position: 0,
            raw_line: raw_line.clone(),
            raw_field_value: field.chars().take(1024).collect(),
            code,
            reason,
        };
        let value = match value {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
            Ok(other) => {
                out.errors.push(LoadError {
                    column: String::new(),
                    col_type: String::new(),
                    col_length: String::new(),
                    ..error(
                        &columns[0],
                        1216,
                        format!(
                            "Invalid JSON: a {} is not an object or an array",
                            other.type_name()
                        ),
                        "",
                    )
                });
                continue;
            }
            Err(e) => {
                let at = e.at.max(range.start);
                out.errors.push(LoadError {
                    line: json::line_of(data, at) as i64,
                    column: String::new(),
                    col_type: String::new(),
                    col_length: String::new(),
                    ..error(&columns[0], 1216, format!("Invalid JSON: {}", e.reason), "")
                });
                continue;
            }
        };
        let mut fields: Vec<String> = Vec::with_capacity(columns.len());
        let mut failed = None;
        for (i, column) in columns.iter().enumerate() {
            let found = match mapping {
                Mapping::Auto { ignorecase } => match &value {
                    Value::Object(fields) => fields
                        .iter()
                        .rev()
                        .find(|(k, _)| {
                            if *ignorecase {
                                k.eq_ignore_ascii_case(&column.name)
                            } else {
                                *k == column.name
                            }
                        })
                        .map(|(_, v)| v),
                    // Arrays need a JSONPaths file ("Data format parameters").
                    _ => {
                        failed = Some(error(
                            column,
                            1216,
                            "Invalid JSON: an array needs a JSONPaths file".into(),
                            "",
                        ));
                        break;
                    }
                },
                Mapping::Paths(paths) => match follow(&value, &paths[i]) {
                    Ok(v) => v,
                    Err(reason) => {
                        failed = Some(error(column, 1216, reason, ""));
                        break;
                    }
                },
            };
            match convert(found, column, timeformat) {
                Ok(text) => fields.push(text),
                Err((code, reason, field)) => {
                    failed = Some(error(column, code, reason, &field));
                    break;
                }
            }
        }
        match failed {
            Some(e) => out.errors.push(e),
            None => {
                out.lines.extend_from_slice(fields.join("\t").as_bytes());
                out.lines.push(b'\n');
                out.rows += 1;
            }
        }
    }
    out
}

/// `\N`, or the value escaped for `COPY … FROM STDIN` text.
pub fn copy_text(value: Option<&str>) -> String {
    let Some(v) = value else {
        return "\\N".into();
    };
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

type Failed = (i32, String, String);

/// One JSON value into a column, as `COPY` text; or the load error's code, reason and the
/// field's text.
fn convert(v: Option<&Value>, column: &Column, timeformat: TimeFormat) -> Result<String, Failed> {
    let text_of = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.clone(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    };
    let null = |column: &Column| {
        if column.not_null {
            Err((
                1213,
                "Missing data for not-null field".to_owned(),
                String::new(),
            ))
        } else {
            Ok(copy_text(None))
        }
    };
    let Some(v) = v.filter(|v| **v != Value::Null) else {
        return null(column);
    };
    match &column.ty {
        ColType::Varchar(n) | ColType::Char(n) => {
            let s = match v {
                Value::String(s) => s.clone(),
                // A number keeps its text as written.
                Value::Number(num) => num.clone(),
                Value::Bool(b) => b.to_string(),
                // An object or array is loaded as its JSON text ("COPY from JSON format");
                // the stand-in has no serializer for it and refuses it, the stricter reading.
                other => {
                    return Err((
                        1216,
                        format!(
                            "Invalid JSON: an {} for a character column",
                            other.type_name()
                        ),
                        String::new(),
                    ));
                }
            };
            if s.len() > *n as usize {
                let what = if matches!(column.ty, ColType::Char(_)) {
                    "Char"
                } else {
                    "String"
                };
                return Err((1204, format!("{what} length exceeds DDL length"), s));
            }
            Ok(copy_text(Some(&s)))
        }
        ColType::SmallInt | ColType::Integer | ColType::BigInt => {
            let s = match v {
                Value::String(s) if s.trim().is_empty() => return null(column),
                Value::String(s) | Value::Number(s) => s.clone(),
                other => {
                    return Err((
                        1207,
                        format!(
                            "Invalid digit, Value '{}', Pos 0, Type: Integer",
                            text_of(other)
                        ),
                        text_of(other),
                    ));
                }
            };
            let digits = s.strip_prefix(['-', '+']).unwrap_or(&s);
            if let Some(pos) = digits
                .find(|c: char| !c.is_ascii_digit())
                .or(digits.is_empty().then_some(0))
            {
                let bad = digits[pos..].chars().next().unwrap_or(' ');
                let kind = match column.ty {
                    ColType::SmallInt => "Short",
                    ColType::BigInt => "Long",
                    _ => "Integer",
                };
                return Err((
                    1207,
                    format!("Invalid digit, Value '{bad}', Pos {pos}, Type: {kind}"),
                    s.clone(),
                ));
            }
            let fits = match column.ty {
                ColType::SmallInt => s.parse::<i16>().is_ok(),
                ColType::Integer => s.parse::<i32>().is_ok(),
                _ => s.parse::<i64>().is_ok(),
            };
            if !fits {
                return Err((1222, "Integer value overflow".into(), s));
            }
            Ok(s)
        }
        ColType::Real | ColType::Double | ColType::Numeric => {
            let s = match v {
                Value::String(s) if s.trim().is_empty() => return null(column),
                Value::String(s) | Value::Number(s) => s.clone(),
                other => return Err((1208, "Invalid float value".into(), text_of(other))),
            };
            if s.trim().parse::<f64>().is_err() {
                let code = if column.ty == ColType::Numeric {
                    1209
                } else {
                    1208
                };
                return Err((
                    code,
                    format!(
                        "Invalid {} value",
                        if code == 1209 { "decimal" } else { "float" }
                    ),
                    s,
                ));
            }
            Ok(s.trim().to_owned())
        }
        ColType::Boolean => match v {
            Value::Bool(b) => Ok(if *b { "t".into() } else { "f".into() }),
            Value::String(s) if s.is_empty() => null(column),
            Value::String(s)
                if ["t", "f", "true", "false", "1", "0", "y", "n", "yes", "no"]
                    .contains(&s.to_ascii_lowercase().as_str()) =>
            {
                Ok(s.clone())
            }
            Value::Number(n) if n == "0" || n == "1" => Ok(n.clone()),
            other => Err((1210, "Invalid boolean value".into(), text_of(other))),
        },
        ColType::Timestamp | ColType::TimestampTz | ColType::Date => {
            let s = match v {
                Value::String(s) if s.trim().is_empty() => return null(column),
                Value::String(s) | Value::Number(s) => s.clone(),
                other => {
                    return Err((
                        1206,
                        "Invalid timestamp format or value".into(),
                        text_of(other),
                    ));
                }
            };
            timestamp(&s, timeformat, &column.ty).ok_or_else(|| {
                (
                    1206,
                    format!(
                        "Invalid timestamp format or value [{}]",
                        describe(timeformat)
                    ),
                    s,
                )
            })
        }
        ColType::Other(o) => Err((
            1223,
            format!("Data type {o} is not loaded by this COPY"),
            text_of(v),
        )),
    }
}

fn describe(f: TimeFormat) -> &'static str {
    match f {
        TimeFormat::Default => "YYYY-MM-DD HH24:MI:SS",
        TimeFormat::Auto => "auto",
        TimeFormat::EpochSecs => "epochsecs",
        TimeFormat::EpochMillisecs => "epochmillisecs",
    }
}

/// A time as PostgreSQL reads it, from `s` read the way `format` says.
fn timestamp(s: &str, format: TimeFormat, ty: &ColType) -> Option<String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let epoch = |ms: i64| DateTime::from_timestamp_millis(ms).map(|d| d.naive_utc());
    let at: NaiveDateTime = match format {
        TimeFormat::EpochMillisecs | TimeFormat::EpochSecs => {
            // An integral number; a fraction is not epoch time.
            let n: i64 = s.trim().parse().ok()?;
            let ms = if format == TimeFormat::EpochSecs {
                n.checked_mul(1000)?
            } else {
                n
            };
            epoch(ms)?
        }
        TimeFormat::Default | TimeFormat::Auto => {
            let s = s.trim();
            let formats = [
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S",
            ];
            let parsed = formats
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                .or_else(|| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                });
            match (parsed, format) {
                (Some(p), _) => p,
                (None, TimeFormat::Auto) => DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|d| d.naive_utc())?,
                _ => return None,
            }
        }
    };
    Some(match ty {
        ColType::Date => at.format("%Y-%m-%d").to_string(),
        ColType::TimestampTz => at.format("%Y-%m-%d %H:%M:%S%.f+00").to_string(),
        _ => at.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
    })
}

/// The files a manifest names ("Using a manifest to specify data files"): each entry's
/// `url`, whether it is `mandatory`, and its `meta.content_length` (required for Parquet).
pub fn manifest(data: &[u8], parquet: bool) -> Result<Vec<(String, bool)>, String> {
    let mut values = json::Stream::new(data);
    let Some((_, Ok(Value::Object(fields)))) = values.next() else {
        return Err("the manifest is not a JSON object".into());
    };
    let Some((_, Value::Array(entries))) = fields.into_iter().find(|(k, _)| k == "entries") else {
        return Err("the manifest has no \"entries\" array".into());
    };
    let mut out = Vec::new();
    for e in entries {
        let Value::Object(e) = e else {
            return Err("a manifest entry is not an object".into());
        };
        let get = |k: &str| e.iter().find(|(n, _)| n == k).map(|(_, v)| v);
        let Some(Value::String(url)) = get("url") else {
            return Err("a manifest entry has no \"url\"".into());
        };
        if !url.starts_with("s3://") {
            return Err(format!(
                "COPY with MANIFEST parameter requires full path of an S3 object: {url}"
            ));
        }
        let mandatory = matches!(get("mandatory"), Some(Value::Bool(true)));
        if parquet {
            let length = match get("meta") {
                Some(Value::Object(m)) => m
                    .iter()
                    .any(|(k, v)| k == "content_length" && matches!(v, Value::Number(_))),
                _ => false,
            };
            if !length {
                return Err(format!(
                    "the manifest entry for {url} has no meta.content_length, which COPY from \
                     Parquet needs"
                ));
            }
        }
        out.push((url.clone(), mandatory));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: ColType) -> Column {
        Column {
            name: name.into(),
            ty,
            not_null: false,
            identity: false,
        }
    }

    #[test]
    fn copy_parameters_are_held_to_their_pages() {
        let c = parse("COPY staging_events (artist, ts) FROM 's3://b/log_data'\nIAM_ROLE 'arn:aws:iam::123456789012:role/dwhRole'\nREGION 'us-west-2'\nFORMAT AS JSON 's3://b/paths.json'\nTIMEFORMAT 'epochmillisecs'\nMAXERROR 3\nCOMPUPDATE OFF").unwrap();
        assert_eq!(
            c.columns.as_deref(),
            Some(&["artist".to_owned(), "ts".to_owned()][..])
        );
        assert_eq!(c.format, Format::JsonPaths("s3://b/paths.json".into()));
        assert_eq!((c.max_error, c.timeformat), (3, TimeFormat::EpochMillisecs));
        for bad in [
            "COPY t FROM 's3://b/x' FORMAT AS JSON 'auto'",
            "COPY t FROM 's3://b/x' IAM_ROLE 'arn:aws:iam::1:role/r' FORMAT AS JSON 'auto'",
            "COPY t FROM 's3://b/x' IAM_ROLE 'arn:aws:iam::123456789012:role/r' FORMAT AS JSON 'auto' MAXERROR 100001",
            "COPY t FROM 's3://b/x' IAM_ROLE 'arn:aws:iam::123456789012:role/r' FORMAT AS JSON 'Auto'",
            "COPY t FROM 's3://b/x' IAM_ROLE 'arn:aws:iam::123456789012:role/r' FORMAT AS JSON 'auto' TIMEFORMAT 'EPOCHMILLISECS'",
            "COPY t FROM 's3://b/x' IAM_ROLE 'arn:aws:iam::123456789012:role/r' FORMAT AS PARQUET REGION 'us-west-2'",
            "COPY t FROM 's3://b/x' IAM_ROLE 'arn:aws:iam::123456789012:role/r' FORMAT AS PARQUET MAXERROR 2",
            "COPY t FROM 's3://b/x' IAM_ROLE 'arn:aws:iam::123456789012:role/r' FORMAT AS JSON 'auto' NOLOAD",
            "COPY t FROM 's3://b/x' IAM_ROLE 'arn:aws:iam::123456789012:role/r'",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_records_load_or_become_load_errors() {
        let columns = [
            col("userid", ColType::Integer),
            col("name", ColType::Varchar(4)),
            col("ts", ColType::Timestamp),
        ];
        let data = b"{\"userid\": \"\", \"name\": 4.6, \"ts\": 1541105830796}\n{\"userid\": \"x1\", \"name\": \"a\", \"ts\": 1}\n{\"userid\": 2, \"name\": \"\xc3\xa9\xc3\xa9\xc3\xa9\", \"ts\": 1}\n";
        let d = decode_json(
            "s3://b/f.json",
            data,
            &columns,
            &Mapping::Auto { ignorecase: false },
            TimeFormat::EpochMillisecs,
        );
        assert_eq!(d.rows, 1);
        assert_eq!(
            String::from_utf8_lossy(&d.lines),
            "\\N\t4.6\t2018-11-01 20:57:10.796\n"
        );
        assert_eq!(d.errors.len(), 2);
        assert_eq!(
            (d.errors[0].line, d.errors[0].code, &d.errors[0].reason[..]),
            (2, 1207, "Invalid digit, Value 'x', Pos 0, Type: Integer")
        );
        assert_eq!(
            (d.errors[1].line, d.errors[1].code, &d.errors[1].column[..]),
            (3, 1204, "name")
        );
    }
}
