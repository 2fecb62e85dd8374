//! virtio-console with a single port: the agent's byte channel.
//!
//! Queue 0 (receive) carries host bytes into the guest, queue 1 (transmit)
//! carries the guest's bytes to the host sink.

use std::collections::VecDeque;
use std::io::{Read, Write};

use virtio_queue::{Queue, QueueT, Reader, Writer};
use vm_memory::GuestMemoryMmap;

use super::{VirtioDevice, VIRTIO_F_VERSION_1};

/// Virtio device id of a console.
pub const DEVICE_ID: u32 = 3;
/// Queue sizes: receive, transmit.
const QUEUE_SIZES: &[u16] = &[256, 256];
/// Index of the receive queue.
pub const RX_QUEUE: usize = 0;
/// Index of the transmit queue.
pub const TX_QUEUE: usize = 1;

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The guest's descriptor chain is malformed.
    #[error("descriptor chain at head {head} of queue {queue}: {source}")]
    Chain {
        /// Queue index.
        queue: usize,
        /// Head descriptor index.
        head: u16,
        /// Underlying error.
        source: virtio_queue::Error,
    },
    /// Copying between guest memory and the host failed.
    #[error("copying {len} bytes of console data on queue {queue}: {source}")]
    Copy {
        /// Queue index.
        queue: usize,
        /// Bytes to copy.
        len: usize,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The used ring could not be updated.
    #[error("returning descriptor {head} on queue {queue}: {source}")]
    Used {
        /// Queue index.
        queue: usize,
        /// Head descriptor index.
        head: u16,
        /// Underlying error.
        source: virtio_queue::Error,
    },
}

/// A one-port virtio console.
pub struct Console {
    input: VecDeque<u8>,
    output: Box<dyn Write + Send>,
}

impl Console {
    /// A console whose guest output goes to `output`.
    pub fn new(output: Box<dyn Write + Send>) -> Console {
        Console {
            input: VecDeque::new(),
            output,
        }
    }

    /// Queues host bytes for the guest; they are delivered when the
    /// receive queue is next processed.
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
    }

    /// Bytes waiting for receive buffers.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }

    fn receive(
        &mut self,
        queue: &mut Queue,
        memory: &GuestMemoryMmap,
    ) -> Result<bool, ConsoleError> {
        let mut used = false;
        while !self.input.is_empty() {
            let Some(chain) = queue.pop_descriptor_chain(memory) else {
                break;
            };
            let head = chain.head_index();
            let mut writer = Writer::new(memory, chain).map_err(|source| ConsoleError::Chain {
                queue: RX_QUEUE,
                head,
                source,
            })?;
            let len = writer.available_bytes().min(self.input.len());
            let bytes: Vec<u8> = self.input.drain(..len).collect();
            writer
                .write_all(&bytes)
                .map_err(|source| ConsoleError::Copy {
                    queue: RX_QUEUE,
                    len,
                    source,
                })?;
            queue
                .add_used(memory, head, len as u32)
                .map_err(|source| ConsoleError::Used {
                    queue: RX_QUEUE,
                    head,
                    source,
                })?;
            used = true;
        }
        Ok(used)
    }

    fn transmit(
        &mut self,
        queue: &mut Queue,
        memory: &GuestMemoryMmap,
    ) -> Result<bool, ConsoleError> {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(memory) {
            let head = chain.head_index();
            let mut reader = Reader::new(memory, chain).map_err(|source| ConsoleError::Chain {
                queue: TX_QUEUE,
                head,
                source,
            })?;
            let len = reader.available_bytes();
            let mut bytes = vec![0; len];
            reader
                .read_exact(&mut bytes)
                .and_then(|()| self.output.write_all(&bytes))
                .and_then(|()| self.output.flush())
                .map_err(|source| ConsoleError::Copy {
                    queue: TX_QUEUE,
                    len,
                    source,
                })?;
            queue
                .add_used(memory, head, 0)
                .map_err(|source| ConsoleError::Used {
                    queue: TX_QUEUE,
                    head,
                    source,
                })?;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for Console {
    type Error = ConsoleError;

    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows, max_nr_ports: unused without the size and
        // multiport features.
        super::read_config_bytes(&[0; 8], offset, data);
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        memory: &GuestMemoryMmap,
    ) -> Result<bool, ConsoleError> {
        match index {
            RX_QUEUE => self.receive(queue, memory),
            TX_QUEUE => self.transmit(queue, memory),
            _ => Ok(false),
        }
    }
}
