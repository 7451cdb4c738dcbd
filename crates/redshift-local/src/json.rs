//! JSON as COPY reads it: a stream of values separated by white space, each with the byte
//! range it came from, numbers kept as written (a number loaded into a text column keeps its
//! text).

/// A JSON value; numbers as their text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The JSON type's name, as the load errors say it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

/// A value that is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub at: usize,
    pub reason: String,
}

/// The values of `data`, each with its byte range; a value that is not JSON stops the
/// stream at its line, which the caller reports, and the stream goes on at the next line.
#[derive(Debug)]
pub struct Stream<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Stream<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Stream { data, at: 0 }
    }
}

impl Iterator for Stream<'_> {
    type Item = (std::ops::Range<usize>, Result<Value, Invalid>);

    fn next(&mut self) -> Option<Self::Item> {
        let mut p = Parser {
            d: self.data,
            i: self.at,
        };
        p.ws();
        if p.i >= self.data.len() {
            return None;
        }
        let start = p.i;
        match p.value(0) {
            Ok(v) => {
                self.at = p.i;
                Some((start..p.i, Ok(v)))
            }
            Err(e) => {
                // On to the line after the error.
                let next = self.data[e.at.min(self.data.len())..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(self.data.len(), |n| e.at + n + 1);
                self.at = next.max(start + 1);
                Some((start..self.at, Err(e)))
            }
        }
    }
}

struct Parser<'a> {
    d: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        // A byte order mark at the start is white space too.
        if self.i == 0 && self.d.starts_with(b"\xEF\xBB\xBF") {
            self.i = 3;
        }
        while self.i < self.d.len() && matches!(self.d[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, reason: impl Into<String>) -> Result<T, Invalid> {
        Err(Invalid {
            at: self.i,
            reason: reason.into(),
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, Invalid> {
        if depth > 128 {
            return self.err("nested too deep");
        }
        self.ws();
        match self.d.get(self.i) {
            None => self.err("unexpected end of data"),
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.d.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Value::Object(fields));
                }
                loop {
                    self.ws();
                    if self.d.get(self.i) != Some(&b'"') {
                        return self.err("expected a quoted key");
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.d.get(self.i) != Some(&b':') {
                        return self.err("expected ':'");
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    fields.push((key, v));
                    self.ws();
                    match self.d.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Value::Object(fields));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.d.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.d.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.word(b"true", Value::Bool(true)),
            Some(b'f') => self.word(b"false", Value::Bool(false)),
            Some(b'n') => self.word(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                if self.d[self.i] == b'-' {
                    self.i += 1;
                }
                let digits = |p: &mut Self| {
                    let s = p.i;
                    while p.i < p.d.len() && p.d[p.i].is_ascii_digit() {
                        p.i += 1;
                    }
                    p.i > s
                };
                if !digits(self) {
                    return self.err("invalid number");
                }
                if self.d.get(self.i) == Some(&b'.') {
                    self.i += 1;
                    if !digits(self) {
                        return self.err("invalid number");
                    }
                }
                if matches!(self.d.get(self.i), Some(b'e' | b'E')) {
                    self.i += 1;
                    if matches!(self.d.get(self.i), Some(b'+' | b'-')) {
                        self.i += 1;
                    }
                    if !digits(self) {
                        return self.err("invalid number");
                    }
                }
                let text = std::str::from_utf8(&self.d[start..self.i]).unwrap_or("0");
                Ok(Value::Number(text.to_owned()))
            }
            Some(_) => self.err("not a JSON value"),
        }
    }

    fn word(&mut self, w: &[u8], v: Value) -> Result<Value, Invalid> {
        if self.d[self.i..].starts_with(w) {
            self.i += w.len();
            Ok(v)
        } else {
            self.err("not a JSON value")
        }
    }

    fn string(&mut self) -> Result<String, Invalid> {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.d.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.d.get(self.i) else {
                        return self.err("unterminated string");
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code)
                                && self.d.get(self.i) == Some(&b'\\')
                                && self.d.get(self.i + 1) == Some(&b'u')
                            {
                                self.i += 2;
                                let low = self.hex4()?;
                                code = 0x10000
                                    + ((code - 0xD800) << 10)
                                    + (low.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            let c = char::from_u32(code).unwrap_or('\u{FFFD}');
                            let mut buf = [0; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.err("invalid escape"),
                    }
                }
                b if b < 0x20 => return self.err("control character in a string"),
                b => out.push(b),
            }
        }
        String::from_utf8(out).or_else(|_| self.err("invalid UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32, Invalid> {
        let Some(h) = self.d.get(self.i..self.i + 4) else {
            return self.err("invalid \\u escape");
        };
        let code = std::str::from_utf8(h)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        self.i += 4;
        code.map_or_else(|| self.err("invalid \\u escape"), Ok)
    }
}

/// The 1-based line of byte `at` in `data`.
pub fn line_of(data: &[u8], at: usize) -> u64 {
    1 + data[..at.min(data.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_numbers_as_written_and_resume_after_a_bad_line() {
        let data = b"{\"a\": 4.60, \"b\": \"x\\u00e9\"}\n{bad\n[1, null]";
        let got: Vec<_> = Stream::new(data).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0].1,
            Ok(Value::Object(vec![
                ("a".into(), Value::Number("4.60".into())),
                ("b".into(), Value::String("xé".into()))
            ]))
        );
        assert!(got[1].1.is_err());
        assert_eq!(line_of(data, got[1].0.start), 2);
        assert_eq!(
            got[2].1,
            Ok(Value::Array(vec![Value::Number("1".into()), Value::Null]))
        );
    }
}
