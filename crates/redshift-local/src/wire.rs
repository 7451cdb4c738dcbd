//! The PostgreSQL wire protocol (version 3), as much as a proxy needs: messages read and
//! written whole, error and notice fields.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A message: its type byte and its body.
#[derive(Debug, Clone)]
pub struct Message {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Message {
    pub fn new(tag: u8, body: Vec<u8>) -> Self {
        Message { tag, body }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 5);
        out.push(self.tag);
        out.extend_from_slice(&((self.body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// A `Query` (`Q`) or `Parse` (`P`) message's SQL text.
    pub fn sql(&self) -> Option<&str> {
        let body = match self.tag {
            b'Q' => &self.body[..],
            b'P' => {
                let name_end = self.body.iter().position(|&b| b == 0)?;
                &self.body[name_end + 1..]
            }
            _ => return None,
        };
        let end = body.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&body[..end]).ok()
    }

    /// The same `Query` or `Parse` message with `sql` in place of its text.
    pub fn with_sql(&self, sql: &str) -> Message {
        match self.tag {
            b'P' => {
                let name_end = self.body.iter().position(|&b| b == 0).unwrap_or(0);
                let rest = &self.body[name_end + 1..];
                let sql_end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                let mut body = self.body[..=name_end].to_vec();
                body.extend_from_slice(sql.as_bytes());
                body.push(0);
                body.extend_from_slice(&rest[(sql_end + 1).min(rest.len())..]);
                Message::new(b'P', body)
            }
            _ => query(sql),
        }
    }
}

/// A simple `Query` message.
pub fn query(sql: &str) -> Message {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    Message::new(b'Q', body)
}

/// Reads one message (`None` at the end of the stream).
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Message>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=1 << 30).contains(&len) {
        return Err(std::io::Error::other(format!("bad message length {len}")));
    }
    let mut body = vec![0; len - 4];
    r.read_exact(&mut body).await?;
    Ok(Some(Message { tag: head[0], body }))
}

/// Reads a startup-phase message (no type byte): its whole body, the code first.
pub async fn read_startup<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if !(8..=10_000).contains(&len) {
        return Err(std::io::Error::other(format!("bad startup length {len}")));
    }
    let mut body = vec![0; len - 4];
    r.read_exact(&mut body).await?;
    Ok(body)
}

pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, messages: &[Message]) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    for m in messages {
        out.put_slice(&m.encode());
    }
    w.write_all(&out).await?;
    w.flush().await
}

/// The fields of an `ErrorResponse` or `NoticeResponse`.
#[derive(Debug, Clone, Default)]
pub struct Fields(pub Vec<(u8, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        let mut out = Vec::new();
        let mut i = 0;
        while i < body.len() && body[i] != 0 {
            let code = body[i];
            let end = body[i + 1..]
                .iter()
                .position(|&b| b == 0)
                .map_or(body.len(), |p| i + 1 + p);
            out.push((
                code,
                String::from_utf8_lossy(&body[i + 1..end]).into_owned(),
            ));
            i = end + 1;
        }
        Fields(out)
    }

    pub fn get(&self, code: u8) -> Option<&str> {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, code: u8, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some(f) => f.1 = value,
            None => self.0.push((code, value)),
        }
    }

    pub fn remove(&mut self, code: u8) {
        self.0.retain(|(c, _)| *c != code);
    }

    pub fn message(&self, tag: u8) -> Message {
        let mut body = Vec::new();
        for (c, v) in &self.0 {
            body.push(*c);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        Message::new(tag, body)
    }

    /// An error or notice of our own.
    pub fn new(severity: &str, code: &str, message: &str) -> Fields {
        Fields(vec![
            (b'S', severity.to_owned()),
            (b'V', severity.to_owned()),
            (b'C', code.to_owned()),
            (b'M', message.to_owned()),
        ])
    }
}

/// `CommandComplete` with `tag`.
pub fn complete(tag: &str) -> Message {
    let mut body = tag.as_bytes().to_vec();
    body.push(0);
    Message::new(b'C', body)
}

/// `ReadyForQuery` with the transaction status (`I`, `T` or `E`).
pub fn ready(status: u8) -> Message {
    Message::new(b'Z', vec![status])
}
