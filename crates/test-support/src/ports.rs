//! Free loopback ports for the servers the tests start.

use std::net::TcpListener;

/// A port no one listens on now (another process may take it before it is used).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `start` on free ports until it succeeds (`Some`), five tries: between choosing a port and
/// binding it, another process may take it.
pub fn on_a_free_port<T>(mut start: impl FnMut(u16) -> Option<T>) -> Option<T> {
    (0..5).find_map(|_| start(free_port()))
}
