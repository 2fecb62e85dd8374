//! Log lines: to the `--log` file (or standard error), as text
//! (`time="…" level=… msg="…"`) or JSON (`{"level":…,"msg":…,"time":…}`),
//! the forms container engines read back when a runtime command fails.
//! Messages of the backend crates (the `log` facade) go the same way.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::args::LogFormat;
use crate::timefmt::Timestamp;

/// Where log lines go and how they look.
pub struct Logger {
    sink: Mutex<Box<dyn Write + Send>>,
    to_file: bool,
    format: LogFormat,
    debug: bool,
}

impl Logger {
    /// A logger writing to `file` (appending) or, without one, to standard
    /// error.
    pub fn new(file: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<Logger> {
        let sink: Box<dyn Write + Send> = match file {
            Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
            None => Box::new(std::io::stderr()),
        };
        Ok(Logger {
            sink: Mutex::new(sink),
            to_file: file.is_some(),
            format,
            debug,
        })
    }

    /// Whether lines go to a file rather than standard error.
    pub fn to_file(&self) -> bool {
        self.to_file
    }

    /// Writes one line at `level` (`error`, `warning`, `info`, `debug`).
    pub fn line(&self, level: &str, msg: &str) {
        let line = format_line(self.format, level, msg, Timestamp::now());
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(line.as_bytes());
            let _ = sink.flush();
        }
    }
}

/// One log line, newline included.
pub fn format_line(format: LogFormat, level: &str, msg: &str, time: Timestamp) -> String {
    let time = time.rfc3339();
    match format {
        LogFormat::Json => {
            let object = serde_json::json!({ "level": level, "msg": msg, "time": time });
            format!("{object}\n")
        }
        LogFormat::Text => format!("time={} level={level} msg={}\n", quote(&time), quote(msg)),
    }
}

/// `text` in double quotes, with quotes, backslashes and control
/// characters escaped.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level()
            <= if self.debug {
                log::Level::Debug
            } else {
                log::Level::Warn
            }
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug | log::Level::Trace => "debug",
            };
            self.line(level, &record.args().to_string());
        }
    }

    fn flush(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_lines() {
        let time = Timestamp { secs: 0, nanos: 5 };
        let json = format_line(
            LogFormat::Json,
            "error",
            "container \"x\" does not exist",
            time,
        );
        let value: serde_json::Value = serde_json::from_str(json.trim_end()).expect("json");
        assert_eq!(value["level"], "error");
        assert_eq!(value["msg"], "container \"x\" does not exist");
        assert_eq!(value["time"], "1970-01-01T00:00:00Z");
        assert!(json.ends_with('\n'));
        let text = format_line(LogFormat::Text, "warning", "a \"b\"\nc", time);
        assert_eq!(
            text,
            "time=\"1970-01-01T00:00:00Z\" level=warning msg=\"a \\\"b\\\"\\nc\"\n"
        );
    }
}
