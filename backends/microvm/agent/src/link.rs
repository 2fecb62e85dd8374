//! The agent's sending half of the port, shared by every thread that reports.

use std::fs::File;
use std::sync::{Arc, Mutex};

use strata_agent::protocol::{write_frame, Frame, GuestMessage};

/// Writes whole frames to the host; one frame at a time.
#[derive(Clone)]
pub struct Link(Arc<Mutex<File>>);

impl Link {
    /// A link writing to `port`.
    pub fn new(port: File) -> Link {
        Link(Arc::new(Mutex::new(port)))
    }

    /// Sends one frame; a failure is reported on the console, since the
    /// host is the only one who could be told otherwise.
    pub fn send(&self, frame: &Frame<GuestMessage>) {
        let mut port = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = write_frame(&mut *port, frame) {
            eprintln!("strata-agent: writing to the host: {e}");
        }
    }
}
