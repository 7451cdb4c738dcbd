//! Finding where JSON values start and end without parsing them, so that a file can hold
//! NDJSON, pretty-printed or concatenated objects, or one top-level array, and so that a bad
//! record costs only itself.

/// Whether `b` is JSON whitespace.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The end (exclusive) of the JSON value that starts at `pos`: brackets are matched outside
/// strings, a string ends at its closing quote, anything else at whitespace or a delimiter.
/// `None` when the input ends first.
pub(crate) fn value_end(buf: &[u8], pos: usize) -> Option<usize> {
    match buf.get(pos)? {
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = pos;
            while i < buf.len() {
                match buf[i] {
                    b'"' => i = string_end(buf, i)? - 1,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        b'"' => string_end(buf, pos),
        _ => {
            let delim = |b: &u8| is_ws(*b) || matches!(b, b',' | b'{' | b'}' | b'[' | b']' | b'"');
            // A token that runs into the end of the input may go on in the next buffer.
            match buf[pos..].iter().position(delim)? {
                0 => Some(pos + 1),
                n => Some(pos + n),
            }
        }
    }
}

/// The end (exclusive) of the string whose opening quote is at `pos`.
pub(crate) fn string_end(buf: &[u8], pos: usize) -> Option<usize> {
    let mut i = pos + 1;
    loop {
        let at = memchr::memchr2(b'"', b'\\', &buf[i..])? + i;
        if buf[at] == b'\\' {
            i = at + 2;
            if i > buf.len() {
                return None;
            }
        } else {
            return Some(at + 1);
        }
    }
}

/// Where to carry on after a record that is not valid JSON: the start of the next line (after
/// the record's first) whose first non-blank byte could open an object or array. Everything
/// before it belongs to the bad record. `None` when the input ends first.
pub(crate) fn resync_point(buf: &[u8], pos: usize) -> Option<usize> {
    let mut from = pos;
    loop {
        let nl = memchr::memchr(b'\n', &buf[from..])? + from;
        let start = nl + 1;
        let first = buf[start..]
            .iter()
            .position(|&b| !matches!(b, b' ' | b'\t' | b'\r'));
        match first.map(|i| buf[start + i]) {
            Some(b'{' | b'[') => return Some(start),
            Some(_) => from = start,
            None => return None,
        }
    }
}

/// The raw text of the last member named `key` in the object `obj`, which must be valid JSON.
/// Used to keep a number's text as written when it lands in a text column.
pub(crate) fn raw_member<'a>(obj: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let skip_ws = |mut i: usize| {
        while i < obj.len() && is_ws(obj[i]) {
            i += 1;
        }
        i
    };
    let mut found = None;
    let mut i = skip_ws(0);
    if obj.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(i);
        match obj.get(i)? {
            b'}' => return found,
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return found,
        }
        let key_end = string_end(obj, i)?;
        let raw_key = &obj[i + 1..key_end - 1];
        let matches = if raw_key.contains(&b'\\') {
            serde_json::from_slice::<String>(&obj[i..key_end]).is_ok_and(|k| k == key)
        } else {
            raw_key == key.as_bytes()
        };
        i = skip_ws(key_end);
        if obj.get(i) != Some(&b':') {
            return found;
        }
        i = skip_ws(i + 1);
        let end = value_end(obj, i).unwrap_or(obj.len());
        if matches {
            found = Some(&obj[i..end]);
        }
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_end_matches_brackets_outside_strings() {
        let s = br#"{"a":"}{\"","b":[1,{"c":2}]} tail"#;
        assert_eq!(value_end(s, 0), Some(s.len() - 5));
        assert_eq!(value_end(br#"{"a":1"#, 0), None);
        assert_eq!(value_end(b"42 ", 0), Some(2));
        assert_eq!(value_end(b"\"x\\\"y\" ", 0), Some(6));
    }

    #[test]
    fn raw_member_keeps_number_text() {
        let obj = br#"{"title": 4.60, "x":{"title":1}, "artist_name":883}"#;
        assert_eq!(raw_member(obj, "title"), Some(&b"4.60"[..]));
        assert_eq!(raw_member(obj, "artist_name"), Some(&b"883"[..]));
        assert_eq!(
            raw_member(br#"{"ti\u0074le":1e5}"#, "title"),
            Some(&b"1e5"[..])
        );
    }

    #[test]
    fn resync_skips_to_next_object_line() {
        let s = b"{\"a\":\n  \"b\": 1,\n{\"ok\":1}\n";
        assert_eq!(resync_point(s, 0), Some(16));
    }
}
