//! The wire protocol between the host (`strata-microvm`) and the guest agent.
//!
//! The transport is one virtio-serial port: a single, already-connected
//! byte stream with no `accept`, no second connection and no out-of-band
//! close. ttrpc needs a listening socket to accept connections on and one
//! stream per call for stdio, so instead both sides exchange frames on the
//! one stream:
//!
//! ```text
//! u32 big-endian length of what follows | u8 kind | body
//! kind 0: a JSON control message (HostMessage or GuestMessage)
//! kind 1: stdio data: u8 stream | u16 big-endian id length | process id | bytes
//! ```
//!
//! One VM may host several containers (the containers of a pod): calls
//! name their container, and frames name a process by its [`process_key`],
//! which joins the container id and the exec id.
//!
//! Requests carry an id that their reply repeats; exits and output are
//! pushed by the guest as they happen. The guest sends a process's exit only
//! after all of its output, so the host can report the exit once the frames
//! before it are delivered.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The name of the virtio-serial port the agent listens on.
pub const PORT_NAME: &str = "strata.agent";

/// The exec id of a container's init process in messages; exec ids from
/// containerd are never empty.
pub const INIT: &str = "";

/// The name of the disk that the VM boots with, holding the root
/// filesystem of its first container; other disks are named by their slot.
pub const ROOT_DISK: &str = "root";

/// The key naming process `exec` of `container` in frames. Container ids
/// never contain a slash (containerd allows letters, digits, `.`, `_` and
/// `-`), so the key splits back at its first slash.
pub fn process_key(container: &str, exec: &str) -> String {
    format!("{container}/{exec}")
}

/// Splits a [`process_key`] into its container and exec id.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('/')
}

/// The largest frame either side accepts, so a corrupt length cannot make
/// the reader allocate without bound.
pub const MAX_FRAME: usize = 4 << 20;

/// The largest stdio chunk put in one frame.
pub const MAX_CHUNK: usize = 32 << 10;

/// A message from the host to the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum HostMessage {
    /// The first message; the agent answers with [`GuestMessage::Ready`].
    Hello,
    /// A call that the agent answers with [`GuestMessage::Reply`] of the same id.
    Request {
        /// Chosen by the host, repeated in the reply.
        id: u64,
        /// What to do.
        call: Call,
    },
}

/// The calls the agent serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Call {
    /// Mounts the root filesystem disk and prepares the init process
    /// (its executable is looked up, its stdio made); nothing runs yet.
    Create {
        /// The container's id.
        container: String,
        /// The serial of the disk holding its root filesystem.
        disk: String,
        /// The container's spec, its mounts and hooks left out: its
        /// process, hostname, `root.readonly`, resources, masked and
        /// read-only paths, sysctls and seccomp profile apply in the guest.
        spec: Box<oci_spec::runtime::Spec>,
        /// Kernel filesystems to mount inside the root filesystem.
        mounts: Vec<GuestMount>,
        /// Whether the host connected a standard input.
        stdin: bool,
    },
    /// Starts the init process.
    Start {
        /// The container.
        container: String,
    },
    /// Starts a new process in the container at once.
    Exec {
        /// The container.
        container: String,
        /// The exec id, which names the process in later messages.
        exec_id: String,
        /// The process, as in the OCI spec.
        process: Box<oci_spec::runtime::Process>,
        /// Whether the host connected a standard input.
        stdin: bool,
    },
    /// Sends a signal to one process, or to every process of the container.
    Kill {
        /// The container.
        container: String,
        /// The exec id ([`INIT`] for the init process).
        process: String,
        /// The signal number.
        signal: i32,
        /// Every process of the container instead of `process` alone.
        all: bool,
    },
    /// Closes a process's standard input.
    CloseStdin {
        /// The container.
        container: String,
        /// The exec id.
        process: String,
    },
    /// Sets the window size of a process's terminal.
    ResizePty {
        /// The container.
        container: String,
        /// The exec id.
        process: String,
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Reports the resource usage of a container's processes.
    Stats {
        /// The container.
        container: String,
    },
    /// Ends whatever still runs of a container, unmounts its root
    /// filesystem (so its disk can be reused) and forgets it.
    Remove {
        /// The container.
        container: String,
    },
    /// Syncs the disks and powers the guest off.
    Shutdown,
}

/// A kernel filesystem from the spec's `mounts` that the guest mounts itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GuestMount {
    /// Where inside the container.
    pub destination: String,
    /// The filesystem type (`proc`, `sysfs`, `tmpfs`, `devpts`, `mqueue`).
    pub kind: String,
    /// The mount's source name.
    pub source: String,
    /// The spec's options (flags such as `nosuid`, and data such as `mode=755`).
    pub options: Vec<String>,
}

/// A message from the agent to the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum GuestMessage {
    /// The answer to [`HostMessage::Hello`]: the agent serves calls now.
    Ready {
        /// The guest kernel's release (`uname -r`).
        kernel: String,
    },
    /// The answer to a request.
    Reply {
        /// The request's id.
        id: u64,
        /// What came of it; an error is a message for the user.
        result: Result<Reply, String>,
    },
    /// A process ended, after all of its output was sent.
    Exit {
        /// The process.
        process: String,
        /// Its exit code, or 128 + the signal that killed it.
        code: u32,
    },
}

/// A successful answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Reply {
    /// Done, nothing to report.
    Done,
    /// A process was started; its pid in the guest.
    Started {
        /// The guest pid.
        pid: u32,
    },
    /// The usage of the container's cgroup in the guest.
    Stats(Box<strata_cgroups::Stats>),
}

/// One of a process's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Input, host to guest.
    Stdin,
    /// Output.
    Stdout,
    /// Error output.
    Stderr,
}

impl Stream {
    fn byte(self) -> u8 {
        match self {
            Stream::Stdin => 0,
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Stream> {
        match b {
            0 => Some(Stream::Stdin),
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One unit on the wire, with `M` the control message type of its direction.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<M> {
    /// A control message.
    Control(M),
    /// Bytes of a process's stream.
    Data {
        /// The process.
        process: String,
        /// Which stream.
        stream: Stream,
        /// The bytes.
        data: Vec<u8>,
    },
}

const KIND_CONTROL: u8 = 0;
const KIND_DATA: u8 = 1;

/// Encodes `frame` into the bytes to write in one go.
pub fn encode<M: Serialize>(frame: &Frame<M>) -> io::Result<Vec<u8>> {
    let mut out = vec![0; 4];
    match frame {
        Frame::Control(message) => {
            out.push(KIND_CONTROL);
            serde_json::to_writer(&mut out, message).map_err(io::Error::other)?;
        }
        Frame::Data {
            process,
            stream,
            data,
        } => {
            let id = u16::try_from(process.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "process id too long"))?;
            out.push(KIND_DATA);
            out.push(stream.byte());
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(process.as_bytes());
            out.extend_from_slice(data);
        }
    }
    let length = u32::try_from(out.len() - 4)
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(out)
}

/// Writes one frame.
pub fn write_frame<M: Serialize>(to: &mut impl Write, frame: &Frame<M>) -> io::Result<()> {
    to.write_all(&encode(frame)?)?;
    to.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of the stream.
pub fn read_frame<M: for<'de> Deserialize<'de>>(
    from: &mut impl Read,
) -> io::Result<Option<Frame<M>>> {
    let mut length = [0; 4];
    match from.read_exact(&mut length) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length == 0 || length > MAX_FRAME {
        return Err(invalid(format!("frame length {length} out of range")));
    }
    let mut body = vec![0; length];
    from.read_exact(&mut body)?;
    decode(&body).map(Some)
}

/// Decodes a frame's body (kind and what follows).
pub fn decode<M: for<'de> Deserialize<'de>>(body: &[u8]) -> io::Result<Frame<M>> {
    match body.split_first() {
        Some((&KIND_CONTROL, json)) => serde_json::from_slice(json)
            .map(Frame::Control)
            .map_err(|e| invalid(format!("control message: {e}"))),
        Some((&KIND_DATA, rest)) if rest.len() >= 3 => {
            let stream = Stream::from_byte(rest[0])
                .ok_or_else(|| invalid(format!("stream {} unknown", rest[0])))?;
            let id = u16::from_be_bytes([rest[1], rest[2]]) as usize;
            let rest = &rest[3..];
            if rest.len() < id {
                return Err(invalid(format!("process id length {id} past the frame")));
            }
            let process = String::from_utf8(rest[..id].to_vec())
                .map_err(|_| invalid("process id is not UTF-8".into()))?;
            Ok(Frame::Data {
                process,
                stream,
                data: rest[id..].to_vec(),
            })
        }
        Some((kind, _)) => Err(invalid(format!("frame kind {kind} unknown or truncated"))),
        None => Err(invalid("empty frame".into())),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames: Vec<Frame<HostMessage>> = vec![
            Frame::Control(HostMessage::Hello),
            Frame::Control(HostMessage::Request {
                id: 7,
                call: Call::Kill {
                    container: "c1".into(),
                    process: "e1".into(),
                    signal: 9,
                    all: false,
                },
            }),
            Frame::Data {
                process: process_key("c1", INIT),
                stream: Stream::Stdin,
                data: b"hello\n".to_vec(),
            },
        ];
        let mut wire = Vec::new();
        for frame in &frames {
            write_frame(&mut wire, frame).unwrap();
        }
        let mut reader = wire.as_slice();
        for frame in &frames {
            assert_eq!(
                read_frame::<HostMessage>(&mut reader).unwrap().as_ref(),
                Some(frame)
            );
        }
        assert!(read_frame::<HostMessage>(&mut reader).unwrap().is_none());
    }

    #[test]
    fn process_keys_split_back() {
        assert_eq!(split_key(&process_key("c1", INIT)), Some(("c1", INIT)));
        assert_eq!(split_key(&process_key("c1", "e/1")), Some(("c1", "e/1")));
    }

    #[test]
    fn corrupt_frames_are_errors() {
        let mut huge = &[0xff, 0xff, 0xff, 0xff, 0][..];
        assert!(read_frame::<GuestMessage>(&mut huge).is_err());
        let mut bad_kind = &[0, 0, 0, 1, 9][..];
        assert!(read_frame::<GuestMessage>(&mut bad_kind).is_err());
        let mut short_id = &[0, 0, 0, 4, 1, 1, 0, 5][..];
        assert!(read_frame::<GuestMessage>(&mut short_id).is_err());
    }
}
