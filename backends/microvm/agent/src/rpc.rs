//! A ttrpc server on one already-connected byte stream.
//!
//! ttrpc's own server accepts connections on a listening socket; the
//! agent's port has no `accept`, so this loop reads ttrpc's messages from
//! the stream itself, answers each request on a thread of its own (some
//! calls wait for a process's output or exit) and writes each response,
//! whole, under one lock. Messages, header and status are ttrpc's types.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use protobuf::Message;
use ttrpc::proto::{
    Code, MessageHeader, Request, Response, Status, MESSAGE_HEADER_LENGTH, MESSAGE_TYPE_REQUEST,
};

use crate::protocol::{MAX_MESSAGE, SERVICE};

/// What serves the calls of [`SERVICE`].
pub trait Handler: Send + Sync + 'static {
    /// Answers a call of `method` with request message `payload`: the
    /// encoded response message, or the status that refuses it.
    fn handle(&self, method: &str, payload: &[u8]) -> Result<Vec<u8>, Status>;

    /// Runs after the answer to `method` was written (the agent powers off
    /// after answering `Shutdown`).
    fn answered(&self, method: &str);
}

/// A status with `code` and `message`.
pub fn status(code: Code, message: impl Into<String>) -> Status {
    let mut status = Status::new();
    status.code = code.into();
    status.message = message.into();
    status
}

/// Serves the requests read from `from` until it ends, answering on `to`.
/// Returns `Ok` at a clean end of the stream (between messages), and an
/// error for a truncated message or a failed read.
pub fn serve<W: Write + Send + 'static>(
    from: &mut impl Read,
    to: Arc<Mutex<W>>,
    handler: Arc<impl Handler>,
) -> io::Result<()> {
    loop {
        let mut header = [0; MESSAGE_HEADER_LENGTH];
        match read_full(from, &mut header)? {
            0 => return Ok(()),
            MESSAGE_HEADER_LENGTH => {}
            n => return Err(truncated(format!("a message header ended after {n} bytes"))),
        }
        let header = MessageHeader::from(header);
        let length = header.length as usize;
        if length > MAX_MESSAGE {
            // The stream stays in step: the payload is skipped, not kept.
            skip(from, length)?;
            let refused = status(
                Code::RESOURCE_EXHAUSTED,
                format!("message length {length} exceeds the maximum {MAX_MESSAGE}"),
            );
            respond(&to, header.stream_id, Err(refused));
            continue;
        }
        let mut payload = vec![0; length];
        if read_full(from, &mut payload)? != length {
            return Err(truncated(format!(
                "a message of {length} bytes ended early"
            )));
        }
        if header.type_ != MESSAGE_TYPE_REQUEST {
            eprintln!("strata-agent: ignoring a message of type {}", header.type_);
            continue;
        }
        let request = match Request::parse_from_bytes(&payload) {
            Ok(request) => request,
            Err(e) => {
                let refused = status(Code::INVALID_ARGUMENT, format!("decoding the request: {e}"));
                respond(&to, header.stream_id, Err(refused));
                continue;
            }
        };
        let (to, handler) = (to.clone(), handler.clone());
        std::thread::spawn(move || {
            let answer = if request.service == SERVICE {
                handler.handle(&request.method, &request.payload)
            } else {
                Err(status(
                    Code::UNIMPLEMENTED,
                    format!("service {:?} unknown", request.service),
                ))
            };
            respond(&to, header.stream_id, answer);
            handler.answered(&request.method);
        });
    }
}

/// Writes the response to stream `id`; a failure is reported on the
/// console, since the host is the only one who could be told otherwise.
fn respond<W: Write>(to: &Mutex<W>, id: u32, answer: Result<Vec<u8>, Status>) {
    let mut response = Response::new();
    match answer {
        Ok(payload) => {
            response.set_status(status(Code::OK, ""));
            response.payload = payload;
        }
        Err(status) => response.set_status(status),
    }
    let written = response
        .write_to_bytes()
        .map_err(io::Error::other)
        .and_then(|payload| {
            let length = u32::try_from(payload.len())
                .ok()
                .filter(|&l| l as usize <= MAX_MESSAGE)
                .ok_or_else(|| io::Error::other("response too large"))?;
            let mut message: Vec<u8> = MessageHeader::new_response(id, length).into();
            message.extend_from_slice(&payload);
            let mut to = to.lock().unwrap_or_else(|p| p.into_inner());
            to.write_all(&message)?;
            to.flush()
        });
    if let Err(e) = written {
        eprintln!("strata-agent: answering call {id}: {e}");
    }
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match from.read(&mut buf[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

/// Reads and drops `length` bytes.
fn skip(from: &mut impl Read, length: usize) -> io::Result<()> {
    let skipped = io::copy(&mut from.take(length as u64), &mut io::sink())?;
    if skipped as usize != length {
        return Err(truncated(format!(
            "an oversized message of {length} bytes ended early"
        )));
    }
    Ok(())
}

fn truncated(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, message)
}
