//! The audit log: denials logged at warn level, rate-limited.

use std::sync::{Mutex, Once};
use std::time::Duration;

use crate::audit::Audit;

/// Every warning logged by this test binary.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            LINES.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

/// The captured lines that mention `container`.
fn lines_of(container: &str) -> Vec<String> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger");
        log::set_max_level(log::LevelFilter::Warn);
    });
    let needle = format!("container {container}:");
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&needle))
        .cloned()
        .collect()
}

#[test]
fn denials_are_logged_at_a_limited_rate() {
    assert!(lines_of("audit-1").is_empty());
    let audit = Audit::new("audit-1".into());
    for _ in 0..100 {
        audit.denied(4321, "openat", "/etc/secret", libc::ENOENT);
    }
    let lines = lines_of("audit-1");
    assert_eq!(lines.len(), 20, "{lines:#?}");
    assert_eq!(
        lines[0],
        "WARN container audit-1: pid 4321: openat /etc/secret: denied (No such file or directory (os error 2))"
    );
    std::thread::sleep(Duration::from_millis(200));
    audit.denied(4321, "connect", "10.0.0.1:22", libc::EPERM);
    let lines = lines_of("audit-1");
    assert_eq!(lines.len(), 22, "{lines:#?}");
    assert_eq!(
        lines[20],
        "WARN container audit-1: suppressed 80 denials over the rate limit"
    );
    assert!(
        lines[21].contains("pid 4321: connect 10.0.0.1:22: denied"),
        "{}",
        lines[21]
    );
}
