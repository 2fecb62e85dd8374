//! The message channel between the runtime side and the init helper.
//!
//! Messages are JSON with a 4-byte length prefix over a stream socket pair;
//! a message may carry file descriptors (the terminal's master side). Reads
//! never go past the message at hand, so descriptors attached to the next
//! message are never lost in a read-ahead buffer. The helper is a freshly
//! exec'd single-threaded process and uses plain blocking I/O; the runtime
//! side does the same from a blocking thread.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The largest message accepted, to bound what a confused peer can make us allocate.
const MAX_MESSAGE: usize = 64 << 20;

/// One end of the channel.
pub(crate) struct Channel {
    stream: UnixStream,
}

impl Channel {
    /// Creates a connected pair, both ends close-on-exec.
    pub(crate) fn pair() -> std::io::Result<(Channel, OwnedFd)> {
        let (ours, theirs) = UnixStream::pair()?;
        Ok((Channel::new(ours), OwnedFd::from(theirs)))
    }

    /// Wraps a connected stream.
    pub(crate) fn new(stream: UnixStream) -> Channel {
        Channel { stream }
    }

    /// Bounds how long a receive may block.
    pub(crate) fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// Sends one message.
    pub(crate) fn send<T: Serialize>(&mut self, message: &T) -> std::io::Result<()> {
        self.send_with_fds(message, &[])
    }

    /// Sends one message with descriptors attached.
    pub(crate) fn send_with_fds<T: Serialize>(
        &mut self,
        message: &T,
        fds: &[RawFd],
    ) -> std::io::Result<()> {
        let body = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        let header = (body.len() as u32).to_le_bytes();
        if fds.is_empty() {
            let mut frame = Vec::with_capacity(header.len() + body.len());
            frame.extend_from_slice(&header);
            frame.extend_from_slice(&body);
            return self.stream.write_all(&frame);
        }
        // The descriptors ride on the header's bytes, which go out in one call.
        let iov = [IoSlice::new(&header)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let sent = sendmsg::<()>(
            self.stream.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::empty(),
            None,
        )?;
        if sent != header.len() {
            self.stream.write_all(&header[sent..])?;
        }
        self.stream.write_all(&body)
    }

    /// Receives one message; `Ok(None)` when the other side closed the channel.
    pub(crate) fn recv<T: DeserializeOwned>(&mut self) -> std::io::Result<Option<T>> {
        Ok(self.recv_with_fds()?.map(|(message, _)| message))
    }

    /// Receives one message and the descriptors attached to it.
    pub(crate) fn recv_with_fds<T: DeserializeOwned>(
        &mut self,
    ) -> std::io::Result<Option<(T, Vec<OwnedFd>)>> {
        let mut header = [0u8; 4];
        let mut fds = Vec::new();
        let mut got = 0;
        while got < header.len() {
            let mut space = nix::cmsg_space!([RawFd; 4]);
            let mut iov = [IoSliceMut::new(&mut header[got..])];
            let msg = match recvmsg::<()>(
                self.stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => msg,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for cmsg in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    // SAFETY: the kernel just installed these descriptors in
                    // this process for us; nothing else owns them.
                    fds.extend(
                        received
                            .into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            if msg.bytes == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
            got += msg.bytes;
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > MAX_MESSAGE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("message of {len} bytes exceeds the limit of {MAX_MESSAGE}"),
            ));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        let message = serde_json::from_slice(&body)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(Some((message, fds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_descriptors_arrive_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Channel::new(a), Channel::new(b));
        let file = std::fs::File::open("/dev/null").unwrap();
        a.send(&"first".to_string()).unwrap();
        a.send_with_fds(&"second".to_string(), &[file.as_raw_fd()])
            .unwrap();
        a.send(&"third".to_string()).unwrap();
        drop(a);
        let (first, fds): (String, _) = b.recv_with_fds().unwrap().unwrap();
        assert_eq!((first.as_str(), fds.len()), ("first", 0));
        let (second, fds): (String, _) = b.recv_with_fds().unwrap().unwrap();
        assert_eq!((second.as_str(), fds.len()), ("second", 1));
        let third: String = b.recv().unwrap().unwrap();
        assert_eq!(third, "third");
        assert!(b.recv::<String>().unwrap().is_none());
    }
}
