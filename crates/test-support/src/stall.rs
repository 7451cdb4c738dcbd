//! A TCP proxy in front of a local server (moto) that stalls on command: every connection is
//! passed through, until a request holding a given text arrives while the proxy is set to
//! stall; then that request's response is swallowed whole ([`Stall::Silent`]: the server
//! accepted and answers nothing), or cut after its headers and a few body bytes
//! ([`Stall::MidBody`]), and the connection is held open, as a stalled S3 endpoint does.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// What the proxy does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Passes everything through.
    Pass = 0,
    /// Sends nothing back.
    Silent = 1,
    /// Sends the headers and 10 bytes of the body, then nothing.
    MidBody = 2,
}

#[derive(Debug)]
pub struct StallProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    mode: Arc<AtomicU8>,
}

impl StallProxy {
    /// A proxy to `upstream` (`http://127.0.0.1:PORT`) that stalls requests whose bytes hold
    /// `matching`, once [`StallProxy::set`] says so.
    pub fn start(upstream: &str, matching: &str) -> StallProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(Stall::Pass as u8));
        let shared = Arc::clone(&mode);
        let matching = matching.as_bytes().to_vec();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mode = Arc::clone(&shared);
                let matching = matching.clone();
                std::thread::spawn(move || connection(client, server, &mode, &matching));
            }
        });
        StallProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            mode,
        }
    }

    pub fn set(&self, stall: Stall) {
        self.mode.store(stall as u8, Ordering::SeqCst);
    }
}

fn connection(mut client: TcpStream, mut server: TcpStream, mode: &AtomicU8, matching: &[u8]) {
    // 0: pass; else the stall of the request in flight.
    let stalled = Arc::new(AtomicU8::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let (mut client_in, mut server_out) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (flag, done) = (Arc::clone(&stalled), Arc::clone(&closed));
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match client_in.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let m = mode.load(Ordering::SeqCst);
                if m != Stall::Pass as u8 && contains(&buf[..n], matching) {
                    flag.store(m, Ordering::SeqCst);
                }
                if server_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            done.store(true, Ordering::SeqCst);
            let _ = server_out.shutdown(std::net::Shutdown::Both);
        });
        let mut buf = [0u8; 16 * 1024];
        // Bytes of the stalled response passed so far, and where its body starts.
        let mut response = Vec::new();
        loop {
            let n = match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match stalled.load(Ordering::SeqCst) {
                0 => {
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                m if m == Stall::Silent as u8 => {}
                _ => {
                    // Headers and 10 bytes of body, once; nothing after.
                    let before = response.len();
                    response.extend_from_slice(&buf[..n]);
                    let cut = response
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|i| (i + 4 + 10).min(response.len()));
                    if let Some(cut) = cut
                        && cut > before
                    {
                        let _ = client.write_all(&response[before..cut]);
                    }
                }
            }
            if closed.load(Ordering::SeqCst) {
                break;
            }
        }
        // A stalled response holds the connection open (the server may have closed its
        // side) until the client gives up.
        while stalled.load(Ordering::SeqCst) != 0 && !closed.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
    });
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
