//! One output stream of a process, held in the guest until the host reads
//! it: the relay thread appends what the process writes, the host's
//! `ReadStdout`/`ReadStderr` calls take it in order, waiting while there is
//! none, and `WaitProcess` waits until the host has read the end.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How much unread output a stream holds before the process writing it
/// waits for the host to read.
const HELD_MAX: usize = 1 << 20;

#[derive(Default)]
struct Held {
    chunks: VecDeque<Vec<u8>>,
    size: usize,
    /// No more data will be appended.
    ended: bool,
    /// A read returned the end.
    end_read: bool,
}

/// A stream's unread output and its end.
#[derive(Default)]
pub struct Output {
    held: Mutex<Held>,
    changed: Condvar,
}

impl Output {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, held: MutexGuard<'a, Held>) -> MutexGuard<'a, Held> {
        self.changed.wait(held).unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `data` (the relay reads at most
    /// [`MAX_CHUNK`](strata_agent::protocol::MAX_CHUNK) bytes at once), first waiting while
    /// [`HELD_MAX`] bytes are unread. False once the stream was ended, so
    /// the writer stops.
    pub fn push(&self, data: Vec<u8>) -> bool {
        let mut held = self.held();
        while held.size >= HELD_MAX && !held.ended {
            held = self.wait(held);
        }
        if held.ended {
            return false;
        }
        held.size += data.len();
        held.chunks.push_back(data);
        self.changed.notify_all();
        true
    }

    /// Marks the end: reads return what is held, then the end.
    pub fn end(&self) {
        self.held().ended = true;
        self.changed.notify_all();
    }

    /// The next chunk, waiting for one; `None` at the end.
    pub fn read(&self) -> Option<Vec<u8>> {
        let mut held = self.held();
        loop {
            if let Some(chunk) = held.chunks.pop_front() {
                held.size -= chunk.len();
                self.changed.notify_all();
                return Some(chunk);
            }
            if held.ended {
                held.end_read = true;
                self.changed.notify_all();
                return None;
            }
            held = self.wait(held);
        }
    }

    /// Waits until the stream ended; true if it did. False after `timeout`
    /// in which the stream neither ended nor was full: time spent waiting
    /// for the host to read does not count, so output that is still
    /// coming is not cut short by a slow reader.
    pub fn wait_end(&self, timeout: Duration) -> bool {
        let mut held = self.held();
        let mut deadline = Instant::now() + timeout;
        while !held.ended {
            if held.size >= HELD_MAX {
                held = self.wait(held);
                deadline = Instant::now() + timeout;
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            held = self
                .changed
                .wait_timeout(held, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Waits until a read returned the end.
    pub fn wait_end_read(&self) {
        let mut held = self.held();
        while !held.end_read {
            held = self.wait(held);
        }
    }

    /// Ends the stream and drops what is held, for a process nobody will
    /// read from.
    pub fn abandon(&self) {
        let mut held = self.held();
        held.chunks.clear();
        held.size = 0;
        held.ended = true;
        held.end_read = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use strata_agent::protocol::MAX_CHUNK;

    #[test]
    fn a_read_waits_for_data_then_returns_the_end() {
        let output = Arc::new(Output::default());
        let reader = {
            let output = output.clone();
            std::thread::spawn(move || (output.read(), output.read(), output.read()))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !reader.is_finished(),
            "a read returned with nothing written"
        );
        assert!(output.push(b"one".to_vec()));
        assert!(output.push(b"two".to_vec()));
        output.end();
        assert!(
            !output.push(b"late".to_vec()),
            "data was taken after the end"
        );
        let (a, b, c) = reader.join().unwrap();
        assert_eq!(a.as_deref(), Some(&b"one"[..]));
        assert_eq!(b.as_deref(), Some(&b"two"[..]));
        assert_eq!(c, None);
        output.wait_end_read();
    }

    #[test]
    fn a_writer_and_the_drain_wait_while_too_much_is_unread() {
        let output = Arc::new(Output::default());
        for _ in 0..HELD_MAX / MAX_CHUNK {
            assert!(output.push(vec![0; MAX_CHUNK]));
        }
        let writer = {
            let output = output.clone();
            std::thread::spawn(move || output.push(vec![1; 10]))
        };
        // Time spent full, waiting for the host, does not run the drain out.
        let drain = {
            let output = output.clone();
            std::thread::spawn(move || output.wait_end(Duration::from_millis(20)))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!writer.is_finished(), "the writer went past the limit");
        assert!(
            !drain.is_finished(),
            "the drain timed out while output was held"
        );
        assert_eq!(output.read().map(|c| c.len()), Some(MAX_CHUNK));
        assert!(writer.join().unwrap());
        output.end();
        assert!(drain.join().unwrap());
    }

    #[test]
    fn the_end_wait_times_out_and_abandon_releases_everyone() {
        let output = Arc::new(Output::default());
        let started = Instant::now();
        assert!(!output.wait_end(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(output.push(b"unread".to_vec()));
        let waiter = {
            let output = output.clone();
            std::thread::spawn(move || output.wait_end_read())
        };
        output.abandon();
        waiter.join().unwrap();
        assert_eq!(output.read(), None);
        assert!(output.wait_end(Duration::ZERO));
    }
}
