//! Watching containerd's event stream with `ctr events`.
//!
//! [`Containerd::watch_events`] starts `ctr events` in the background with
//! its output going to a file in the fixture directory, and returns once the
//! subscription is live (it publishes a marker event and waits to see it).
//! [`EventWatcher::events`] parses what arrived so far.
//!
//! `ctr events` 1.6 prints one line per event: the timestamp (Go's
//! `time.Time` format, which contains spaces), the namespace, the topic and
//! the event as compact JSON, e.g.
//!
//! ```text
//! 2024-01-01 10:00:00.123456789 +0000 UTC ns1 /tasks/exit {"container_id":"c1","id":"c1","pid":42,"exit_status":137,"exited_at":"..."}
//! ```
//!
//! Protobuf fields that hold their zero value (an exit status of 0, say)
//! are left out of the JSON.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::containerd::Containerd;

static NEXT_WATCHER: AtomicU32 = AtomicU32::new(0);

/// Label key of the marker events [`Containerd::watch_events`] publishes.
const SYNC_LABEL: &str = "strata-e2e-events-sync";

/// One event as `ctr events` printed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The timestamp as printed.
    pub timestamp: String,
    /// Namespace the event was published in.
    pub namespace: String,
    /// Topic, e.g. `/tasks/exit`.
    pub topic: String,
    /// The event's fields.
    pub body: Value,
}

impl Event {
    /// A string field of the body (`""` if missing).
    pub fn str_field(&self, key: &str) -> &str {
        self.body.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// A numeric field of the body; protobuf leaves zero values out of the
    /// JSON, so a missing field reads as 0.
    pub fn u64_field(&self, key: &str) -> u64 {
        self.body.get(key).and_then(Value::as_u64).unwrap_or(0)
    }

    /// The container the event is about: `container_id` for task events,
    /// `id` for container events.
    pub fn container_id(&self) -> &str {
        match self.str_field("container_id") {
            "" => self.str_field("id"),
            id => id,
        }
    }
}

/// Parses one line of `ctr events` output; `None` if it is not an event
/// line (a log message, say).
pub fn parse_event_line(line: &str) -> Option<Event> {
    // The timestamp has spaces in it, the topic is the first word starting
    // with '/', and the JSON body follows it.
    let words: Vec<(usize, &str)> = line
        .split(' ')
        .scan(0usize, |pos, w| {
            let start = *pos;
            *pos += w.len() + 1;
            Some((start, w))
        })
        .filter(|(_, w)| !w.is_empty())
        .collect();
    let i = words.iter().position(|(_, w)| w.starts_with('/'))?;
    if i < 2 {
        return None;
    }
    let (topic_at, topic) = words[i];
    let namespace = words[i - 1].1;
    let timestamp = line[..words[i - 1].0].trim().to_owned();
    let rest = line[topic_at + topic.len()..].trim();
    let body = if rest.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(rest).ok()?
    };
    Some(Event {
        timestamp,
        namespace: namespace.to_owned(),
        topic: topic.to_owned(),
        body,
    })
}

/// A running `ctr events`; see the module docs. Dropping it kills the
/// process (by PID) and reaps it.
#[derive(Debug)]
pub struct EventWatcher {
    child: Option<Child>,
    out: PathBuf,
    namespace: String,
}

impl Containerd {
    /// Starts `ctr events` and waits until it receives events. Stop it
    /// ([`EventWatcher::stop`] or drop) before the leftover check: it is a
    /// process of this fixture.
    pub fn watch_events(&self) -> Result<EventWatcher> {
        let n = NEXT_WATCHER.fetch_add(1, Ordering::Relaxed);
        let out = self.dir().join(format!("events-{n}.txt"));
        let err = self.dir().join(format!("events-{n}.err"));
        let mut cmd = self.ctr_command();
        cmd.arg("events")
            .stdin(Stdio::null())
            .stdout(File::create(&out).context("creating the events file")?)
            .stderr(File::create(&err).context("creating the events error file")?);
        let child = cmd.spawn().context("starting `ctr events`")?;
        let watcher = EventWatcher {
            child: Some(child),
            out,
            namespace: self.namespace().to_owned(),
        };
        // Publish marker events (a namespace label update) until one shows up.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut k = 0;
        loop {
            k += 1;
            let value = format!("{n}-{k}");
            self.ctr(&[
                "namespaces",
                "label",
                self.namespace(),
                &format!("{SYNC_LABEL}={value}"),
            ])?
            .ok()?;
            let seen = |w: &EventWatcher| {
                w.namespace_events().iter().any(|e| {
                    e.topic == "/namespaces/update"
                        && e.body["labels"][SYNC_LABEL].as_str() == Some(value.as_str())
                })
            };
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                if seen(&watcher) {
                    return Ok(watcher);
                }
                thread::sleep(Duration::from_millis(20));
            }
            if Instant::now() >= deadline {
                bail!(
                    "`ctr events` saw no event within 20s; it printed:\n{}\n{}",
                    watcher.raw(),
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
        }
    }
}

impl EventWatcher {
    /// Everything `ctr events` printed so far.
    pub fn raw(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The events of the fixture's namespace received so far, in order
    /// (the marker events of [`Containerd::watch_events`] left out).
    pub fn events(&self) -> Vec<Event> {
        self.namespace_events()
            .into_iter()
            .filter(|e| e.topic != "/namespaces/update")
            .collect()
    }

    fn namespace_events(&self) -> Vec<Event> {
        self.raw()
            .lines()
            .filter_map(parse_event_line)
            .filter(|e| e.namespace == self.namespace)
            .collect()
    }

    /// The events about container `id` (task and container events).
    pub fn events_for(&self, id: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.container_id() == id)
            .collect()
    }

    /// Waits until an event matching `pred` arrives and returns it.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(&pred) {
                return Ok(e);
            }
            if Instant::now() >= deadline {
                bail!(
                    "no matching event within {timeout:?}; received:\n{}",
                    self.raw()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills `ctr events` (by PID) and returns every event of the namespace
    /// it received.
    pub fn stop(mut self) -> Vec<Event> {
        self.kill();
        self.events()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EventWatcher {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_line() {
        let l = "2024-01-02 03:04:05.123456789 +0000 UTC ns-1 /tasks/exit \
                 {\"container_id\":\"c1\",\"id\":\"c1\",\"pid\":42,\"exit_status\":137}";
        let e = parse_event_line(l).unwrap();
        assert_eq!(e.timestamp, "2024-01-02 03:04:05.123456789 +0000 UTC");
        assert_eq!(e.namespace, "ns-1");
        assert_eq!(e.topic, "/tasks/exit");
        assert_eq!(e.container_id(), "c1");
        assert_eq!(e.u64_field("pid"), 42);
        assert_eq!(e.u64_field("exit_status"), 137);
        assert_eq!(e.str_field("id"), "c1");
    }

    #[test]
    fn missing_fields_read_as_zero() {
        let l = "2024-01-02 03:04:05 +0000 UTC ns /tasks/exit {\"container_id\":\"c\"}";
        let e = parse_event_line(l).unwrap();
        assert_eq!(e.u64_field("exit_status"), 0);
        let l = "2024-01-02 03:04:05 +0000 UTC ns /containers/create {\"id\":\"x\"}";
        assert_eq!(parse_event_line(l).unwrap().container_id(), "x");
    }

    #[test]
    fn rejects_other_lines() {
        assert_eq!(parse_event_line("time=\"x\" level=warning msg=\"y\""), None);
        assert_eq!(parse_event_line(""), None);
        assert_eq!(
            parse_event_line("2024-01-02 03:04:05 +0000 UTC ns /tasks/exit {broken"),
            None
        );
    }
}
