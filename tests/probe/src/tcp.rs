//! `tcp`: loopback TCP inside the container, server and client in this
//! process: bulk throughput (MiB/s) for the first half of the time and the
//! rate of 64-byte request/response round trips (per second) for the
//! second, one JSON line each.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::error::{Error, Result};

/// Bytes per write of the bulk transfer.
const CHUNK: usize = 128 << 10;

/// Bytes of each request and each response.
const MESSAGE: usize = 64;

/// A listener on an ephemeral port of 127.0.0.1.
fn listen() -> Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| Error::new("listening on 127.0.0.1", e))?;
    let addr = l
        .local_addr()
        .map_err(|e| Error::new("reading the listener's address", e))?;
    Ok((l, addr))
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect(addr).map_err(|e| Error::new(format!("connecting to {addr}"), e))?;
    s.set_nodelay(true)
        .map_err(|e| Error::new("setting TCP_NODELAY", e))?;
    Ok(s)
}

/// Joins a server thread and passes on its result.
fn join<T>(h: thread::JoinHandle<Result<T>>) -> Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(Error::invalid("the server thread panicked")))
}

/// Streams for `time` and returns MiB/s as the server received them.
fn stream(time: Duration) -> Result<f64> {
    let (l, addr) = listen()?;
    let server = thread::spawn(move || -> Result<u64> {
        let (mut s, _) = l.accept().map_err(|e| Error::new("accepting", e))?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) => return Err(Error::new("receiving the stream", e)),
            }
        }
    });
    let mut c = connect(addr)?;
    let buf = vec![0x3c_u8; CHUNK];
    let start = Instant::now();
    while start.elapsed() < time {
        c.write_all(&buf)
            .map_err(|e| Error::new("sending the stream", e))?;
    }
    c.shutdown(std::net::Shutdown::Write)
        .map_err(|e| Error::new("closing the stream", e))?;
    let total = join(server)?;
    Ok(total as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
}

/// Sends 64-byte requests and waits for each 64-byte answer for `time`;
/// returns round trips per second.
fn request_response(time: Duration) -> Result<f64> {
    let (l, addr) = listen()?;
    let server = thread::spawn(move || -> Result<()> {
        let (mut s, _) = l.accept().map_err(|e| Error::new("accepting", e))?;
        s.set_nodelay(true)
            .map_err(|e| Error::new("setting TCP_NODELAY", e))?;
        let mut buf = [0u8; MESSAGE];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s
                    .write_all(&buf)
                    .map_err(|e| Error::new("answering a request", e))?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(Error::new("reading a request", e)),
            }
        }
    });
    let mut c = connect(addr)?;
    let mut buf = [0x7e_u8; MESSAGE];
    let mut count = 0u64;
    let start = Instant::now();
    while start.elapsed() < time {
        c.write_all(&buf)
            .map_err(|e| Error::new("sending a request", e))?;
        c.read_exact(&mut buf)
            .map_err(|e| Error::new("reading an answer", e))?;
        count += 1;
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    drop(c);
    join(server)?;
    Ok(rate)
}

/// Runs both measurements, each for half of `seconds`.
pub fn run(seconds: f64) -> Result<()> {
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(Error::invalid(format!(
            "--seconds must be positive, not {seconds}"
        )));
    }
    let half = Duration::from_secs_f64(seconds / 2.0);
    let mib = stream(half)?;
    println!(
        "{}",
        json!({ "test": "stream", "seconds": half.as_secs_f64(), "mib_per_s": mib })
    );
    let rate = request_response(half)?;
    println!(
        "{}",
        json!({ "test": "request_response", "seconds": half.as_secs_f64(), "requests_per_s": rate })
    );
    Ok(())
}
