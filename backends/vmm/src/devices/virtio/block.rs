//! virtio-blk on a raw image file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use virtio_queue::{Queue, QueueT, Reader, Writer};
use vm_memory::{ByteValued, GuestMemoryMmap};

use super::{VirtioDevice, VIRTIO_F_VERSION_1};

/// Virtio device id of a block device.
pub const DEVICE_ID: u32 = 2;
/// Feature: the device supports flush.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Sector size of the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;
/// Request type: read.
pub const T_IN: u32 = 0;
/// Request type: write.
pub const T_OUT: u32 = 1;
/// Request type: flush.
pub const T_FLUSH: u32 = 4;
/// Request type: get device id.
pub const T_GET_ID: u32 = 8;
/// Status: success.
pub const S_OK: u8 = 0;
/// Status: I/O error.
pub const S_IOERR: u8 = 1;
/// Status: unsupported request.
pub const S_UNSUPP: u8 = 2;
/// Length of the id string returned for `T_GET_ID`.
pub const ID_LEN: usize = 20;
const QUEUE_SIZES: &[u16] = &[256];

/// The header that starts every request.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestHeader {
    /// One of the `T_*` request types.
    pub request_type: u32,
    /// Reserved.
    pub reserved: u32,
    /// First sector.
    pub sector: u64,
}

// SAFETY: plain old data made of integers, no padding (4 + 4 + 8 bytes).
unsafe impl ByteValued for RequestHeader {}

/// Why the block device could not be opened or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image could not be opened.
    #[error("opening disk image {path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The guest's descriptor chain is malformed.
    #[error("descriptor chain at head {head}: {source}")]
    Chain {
        /// Head descriptor index.
        head: u16,
        /// Underlying error.
        source: virtio_queue::Error,
    },
    /// The request has no header or no status byte.
    #[error("request at head {head} is malformed: {what}")]
    Malformed {
        /// Head descriptor index.
        head: u16,
        /// What is missing.
        what: &'static str,
    },
    /// Copying between guest memory and the host failed.
    #[error("copying {len} bytes of request at head {head}: {source}")]
    Copy {
        /// Head descriptor index.
        head: u16,
        /// Bytes to copy.
        len: usize,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The used ring could not be updated.
    #[error("returning descriptor {head}: {source}")]
    Used {
        /// Head descriptor index.
        head: u16,
        /// Underlying error.
        source: virtio_queue::Error,
    },
}

/// A virtio-blk device backed by a raw image.
pub struct Block {
    file: File,
    sectors: u64,
    id: [u8; ID_LEN],
}

impl Block {
    /// Opens the raw image at `path` read-write; its size (rounded down to
    /// sectors) is the device's capacity and its file name (cut to
    /// [`ID_LEN`] bytes) its id.
    pub fn open(path: &Path) -> Result<Block, BlockError> {
        let name = path
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default();
        Block::open_with_id(path, name)
    }

    /// Opens the raw image at `path` read-write with `id` (cut to
    /// [`ID_LEN`] bytes) as the id the guest reads as its serial.
    pub fn open_with_id(path: &Path, id: &[u8]) -> Result<Block, BlockError> {
        let err = |source| BlockError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        let mut padded = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        padded[..n].copy_from_slice(&id[..n]);
        Ok(Block {
            file,
            sectors: size / SECTOR_SIZE,
            id: padded,
        })
    }

    /// Executes one request, writing data into `data`/reading it from
    /// `reader`; returns the status and the bytes written to the guest.
    fn execute(
        &mut self,
        header: RequestHeader,
        reader: &mut Reader,
        data: &mut Writer,
        head: u16,
    ) -> Result<(u8, usize), BlockError> {
        let offset = header.sector.checked_mul(SECTOR_SIZE);
        let in_range = |len: usize| {
            offset
                .and_then(|o| o.checked_add(len as u64))
                .is_some_and(|end| end <= self.sectors * SECTOR_SIZE)
        };
        match header.request_type {
            T_IN => {
                let len = data.available_bytes();
                if !in_range(len) {
                    return Ok((S_IOERR, 0));
                }
                let mut buf = vec![0; len];
                if self
                    .file
                    .read_exact_at(&mut buf, offset.unwrap_or(0))
                    .is_err()
                {
                    return Ok((S_IOERR, 0));
                }
                data.write_all(&buf)
                    .map_err(|source| BlockError::Copy { head, len, source })?;
                Ok((S_OK, len))
            }
            T_OUT => {
                let len = reader.available_bytes();
                if !in_range(len) {
                    return Ok((S_IOERR, 0));
                }
                let mut buf = vec![0; len];
                reader
                    .read_exact(&mut buf)
                    .map_err(|source| BlockError::Copy { head, len, source })?;
                match self.file.write_all_at(&buf, offset.unwrap_or(0)) {
                    Ok(()) => Ok((S_OK, 0)),
                    Err(_) => Ok((S_IOERR, 0)),
                }
            }
            T_FLUSH => match self.file.sync_data() {
                Ok(()) => Ok((S_OK, 0)),
                Err(_) => Ok((S_IOERR, 0)),
            },
            T_GET_ID => {
                let len = data.available_bytes().min(ID_LEN);
                data.write_all(&self.id[..len])
                    .map_err(|source| BlockError::Copy { head, len, source })?;
                Ok((S_OK, len))
            }
            _ => Ok((S_UNSUPP, 0)),
        }
    }
}

impl VirtioDevice for Block {
    type Error = BlockError;

    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH
    }

    fn queue_max_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_blk_config starts with the capacity in sectors.
        super::read_config_bytes(&self.sectors.to_le_bytes(), offset, data);
    }

    fn process_queue(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        memory: &GuestMemoryMmap,
    ) -> Result<bool, BlockError> {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(memory) {
            let head = chain.head_index();
            let chain_err = |source| BlockError::Chain { head, source };
            let mut reader = Reader::new(memory, chain.clone()).map_err(chain_err)?;
            let mut writer = Writer::new(memory, chain).map_err(chain_err)?;
            let header: RequestHeader = reader.read_obj().map_err(|_| BlockError::Malformed {
                head,
                what: "request header",
            })?;
            let Some(status_at) = writer.available_bytes().checked_sub(1) else {
                return Err(BlockError::Malformed {
                    head,
                    what: "status byte",
                });
            };
            let mut status = writer.split_at(status_at).map_err(chain_err)?;
            let (code, written) = self.execute(header, &mut reader, &mut writer, head)?;
            status
                .write_all(&[code])
                .map_err(|source| BlockError::Copy {
                    head,
                    len: 1,
                    source,
                })?;
            queue
                .add_used(memory, head, written as u32 + 1)
                .map_err(|source| BlockError::Used { head, source })?;
            used = true;
        }
        Ok(used)
    }
}
