//! The audit log of denials: one warning per denied call, rate-limited so
//! that a container hammering a denied path cannot flood the log.

use std::sync::Mutex;
use std::time::Instant;

/// Sustained denials logged per second.
const RATE: f64 = 20.0;

/// Denials logged in a burst before the rate applies.
const BURST: f64 = 20.0;

/// A token bucket over the denial warnings.
pub(crate) struct Audit {
    container: String,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

impl Audit {
    /// An audit log for `container`.
    pub(crate) fn new(container: String) -> Audit {
        Audit {
            container,
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                at: Instant::now(),
                suppressed: 0,
            }),
        }
    }

    /// Logs that `syscall` by thread `tid` on `what` (a path or an
    /// address) was refused with `errno`, unless the rate is exceeded; the
    /// next logged denial then says how many were left out.
    pub(crate) fn denied(&self, tid: i32, syscall: &str, what: &str, errno: i32) {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * RATE).min(BURST);
        b.at = now;
        if b.tokens < 1.0 {
            b.suppressed += 1;
            return;
        }
        b.tokens -= 1.0;
        if b.suppressed > 0 {
            log::warn!(
                "container {}: suppressed {} denials over the rate limit",
                self.container,
                b.suppressed
            );
            b.suppressed = 0;
        }
        log::warn!(
            "container {}: pid {tid}: {syscall} {what}: denied ({})",
            self.container,
            std::io::Error::from_raw_os_error(errno)
        );
    }
}
