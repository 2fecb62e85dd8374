//! The message channel between the runtime side and the init helper.
//!
//! Messages are JSON, one per line, over a stream socket pair. The helper is a
//! freshly exec'd single-threaded process, so it reads and writes with plain
//! blocking I/O; the runtime side does the same from a blocking thread.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// One end of the channel.
pub(crate) struct Channel {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Channel {
    /// Creates a connected pair, both ends close-on-exec.
    pub(crate) fn pair() -> std::io::Result<(Channel, OwnedFd)> {
        let (ours, theirs) = UnixStream::pair()?;
        Ok((Channel::new(ours)?, OwnedFd::from(theirs)))
    }

    /// Wraps a connected stream.
    pub(crate) fn new(stream: UnixStream) -> std::io::Result<Channel> {
        let writer = stream.try_clone()?;
        Ok(Channel {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Bounds how long a receive may block.
    pub(crate) fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.writer.set_read_timeout(timeout)
    }

    /// Sends one message.
    pub(crate) fn send<T: Serialize>(&mut self, message: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.writer.write_all(&line)
    }

    /// Receives one message; `Ok(None)` when the other side closed the channel.
    pub(crate) fn recv<T: DeserializeOwned>(&mut self) -> std::io::Result<Option<T>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}
