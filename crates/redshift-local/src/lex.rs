//! SQL as tokens, each with its place in the text: enough to find statements, identifiers,
//! literals and keywords (the rules never guess at them inside a string or a comment), and to
//! rewrite a statement by splicing.

use std::ops::Range;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An unquoted name or keyword, as written.
    Word,
    /// A `"quoted"` identifier; its value with `""` undone.
    Quoted(String),
    /// A `'string'` (or `$$dollar$$`) literal; its value with escapes undone.
    Str(String),
    Number,
    /// Punctuation or an operator: `(`, `)`, `,`, `.`, `;`, `::`, `=`, `<>`, …
    Punct,
}

/// One token: its kind and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub span: Range<usize>,
}

impl Token {
    /// The token's text as written.
    pub fn text<'a>(&self, sql: &'a str) -> &'a str {
        &sql[self.span.clone()]
    }

    /// Whether this is the unquoted word `word` (any case).
    pub fn is(&self, sql: &str, word: &str) -> bool {
        self.kind == Kind::Word && self.text(sql).eq_ignore_ascii_case(word)
    }

    /// Whether this is the punctuation `p`.
    pub fn punct(&self, sql: &str, p: &str) -> bool {
        self.kind == Kind::Punct && self.text(sql) == p
    }
}

/// A literal or quoted name that never ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unterminated {
    pub at: usize,
    pub what: &'static str,
}

/// The tokens of `sql`; comments and white space are left out.
pub fn tokens(sql: &str) -> Result<Vec<Token>, Unterminated> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = sql[i + 2..].find("*/").ok_or(Unterminated {
                    at: start,
                    what: "comment",
                })?;
                i += 2 + end + 2;
            }
            b'\'' => {
                // Redshift's literals: '' is a quote, and a backslash escapes the next character.
                let (value, end) = quoted(sql, start, '\'', true, "quoted string")?;
                i = end;
                out.push(Token {
                    kind: Kind::Str(value),
                    span: start..i,
                });
            }
            b'"' => {
                let (value, end) = quoted(sql, start, '"', false, "quoted identifier")?;
                i = end;
                out.push(Token {
                    kind: Kind::Quoted(value),
                    span: start..i,
                });
            }
            b'$' if dollar_tag(&sql[i..]).is_some() => {
                let tag = dollar_tag(&sql[i..]).unwrap_or_default();
                let body = i + tag.len();
                let end = sql[body..].find(tag).ok_or(Unterminated {
                    at: start,
                    what: "dollar-quoted string",
                })?;
                i = body + end + tag.len();
                out.push(Token {
                    kind: Kind::Str(sql[body..body + end].to_owned()),
                    span: start..i,
                });
            }
            _ if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    // 1e-5: the exponent's sign belongs to the number.
                    if (b[i] == b'e' || b[i] == b'E') && matches!(b.get(i + 1), Some(b'-' | b'+')) {
                        i += 1;
                    }
                    i += 1;
                }
                out.push(Token {
                    kind: Kind::Number,
                    span: start..i,
                });
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                out.push(Token {
                    kind: Kind::Word,
                    span: start..i,
                });
            }
            _ => {
                let two = sql.get(i..i + 2).unwrap_or("");
                let len = match two {
                    "::" | "<>" | "!=" | "<=" | ">=" | "||" => 2,
                    _ => sql[i..].chars().next().map_or(1, char::len_utf8),
                };
                i += len;
                out.push(Token {
                    kind: Kind::Punct,
                    span: start..i,
                });
            }
        }
    }
    Ok(out)
}

/// The text quoted by `q` from `start` (where `q` is) with doubled quotes undone and, with
/// `escapes`, backslash escapes too; and the index after its closing quote.
fn quoted(
    sql: &str,
    start: usize,
    q: char,
    escapes: bool,
    what: &'static str,
) -> Result<(String, usize), Unterminated> {
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        let Some(ch) = sql[i..].chars().next() else {
            return Err(Unterminated { at: start, what });
        };
        i += ch.len_utf8();
        match ch {
            c if c == q && sql[i..].starts_with(q) => {
                value.push(q);
                i += 1;
            }
            c if c == q => return Ok((value, i)),
            '\\' if escapes => {
                let Some(next) = sql[i..].chars().next() else {
                    continue;
                };
                i += next.len_utf8();
                value.push(match next {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
            }
            other => value.push(other),
        }
    }
}

/// `$$` or `$tag$` at the start of `s`.
fn dollar_tag(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('$')?;
    let end = rest.find('$')?;
    let tag = &rest[..end];
    tag.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| &s[..end + 2])
        .filter(|t| !t[1..].starts_with(|c: char| c.is_ascii_digit()))
}

/// The statements of `sql` (split at `;` outside literals), each trimmed, empty ones left out.
pub fn statements(sql: &str) -> Result<Vec<&str>, Unterminated> {
    let mut out = Vec::new();
    let mut start = 0;
    for t in tokens(sql)? {
        if t.punct(sql, ";") {
            out.push(sql[start..t.span.start].trim());
            start = t.span.end;
        }
    }
    out.push(sql[start..].trim());
    // A statement of comments alone is empty, too.
    Ok(out
        .into_iter()
        .filter(|s| tokens(s).is_ok_and(|t| !t.is_empty()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_comments_and_names_are_single_tokens() {
        let sql =
            "SELECT 'a;''b\\'c', \"x\"\"y\" -- ; comment\nFROM t /* ; */ WHERE $$;$$ <> 1.5e-3";
        let t = tokens(sql).unwrap();
        let kinds: Vec<_> = t.iter().map(|t| t.kind.clone()).collect();
        assert_eq!(kinds[1], Kind::Str("a;'b'c".into()));
        assert_eq!(kinds[3], Kind::Quoted("x\"y".into()));
        assert!(t.iter().any(|t| t.kind == Kind::Str(";".into())));
        assert_eq!(t.last().unwrap().text(sql), "1.5e-3");
        assert_eq!(statements(sql).unwrap().len(), 1);
        assert_eq!(
            statements("BEGIN; -- x\n; SELECT 1;").unwrap(),
            ["BEGIN", "SELECT 1"]
        );
    }
}
