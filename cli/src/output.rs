//! What commands print: the OCI state object (`state`, `list`), the
//! aligned `list` table, and pid files.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::state::{write_atomic, Record, Status};

/// A container's state as `state` and `list --format json` print it, with
/// the fields in the order OCI runtimes print them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateView {
    /// The spec version the container was created from.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// The init's host pid; 0 once stopped.
    pub pid: i32,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// The bundle directory.
    pub bundle: String,
    /// The root filesystem directory.
    pub rootfs: String,
    /// When the container was created (RFC 3339).
    pub created: String,
    /// The spec's annotations, when there are any.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The owner of the container (filled in by `list` only).
    pub owner: String,
}

impl StateView {
    /// The view of `record` in `status`.
    pub fn new(record: &Record, status: Status, owner: String) -> StateView {
        StateView {
            oci_version: record.oci_version.clone(),
            id: record.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                record.pid
            },
            status: status.as_str().to_owned(),
            bundle: record.bundle.display().to_string(),
            rootfs: record.rootfs.display().to_string(),
            created: record.created.clone(),
            annotations: record.annotations.clone(),
            owner,
        }
    }
}

/// `rows` as a table: every column but the last padded to its widest cell
/// plus three spaces, and to at least twelve characters.
pub fn table(rows: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 12;
    const PADDING: usize = 3;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let widest = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0);
            (widest + PADDING).max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                let pad = widths[c].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// The name of user `uid` from `/etc/passwd`, or `#uid`.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let _password = fields.next()?;
                (fields.next()?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

/// Writes `pid` to `path` atomically, as callers poll for the file.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = crate::error::absolute(path)?;
    write_atomic(&path, pid.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_align() {
        let rows = vec![
            vec!["ID".into(), "PID".into(), "OWNER".into()],
            vec!["a-long-container-id".into(), "1".into(), "root".into()],
        ];
        // 19 characters plus 3 of padding; the short column gets the minimum 12.
        let expected = format!(
            "{:<22}{:<12}OWNER\n{:<22}{:<12}root\n",
            "ID", "PID", "a-long-container-id", "1"
        );
        assert_eq!(table(&rows), expected);
    }

    #[test]
    fn state_view_fields_in_order() {
        let record = Record {
            id: "c".into(),
            pid: 42,
            pid_start: 1,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2024-01-01T00:00:00Z".into(),
            oci_version: "1.1.0".into(),
            annotations: BTreeMap::new(),
            class: "native".into(),
            config: "/r/c/config.json".into(),
        };
        let running =
            serde_json::to_string(&StateView::new(&record, Status::Running, String::new()))
                .expect("json");
        assert_eq!(
            running,
            "{\"ociVersion\":\"1.1.0\",\"id\":\"c\",\"pid\":42,\"status\":\"running\",\
             \"bundle\":\"/b\",\"rootfs\":\"/b/rootfs\",\"created\":\"2024-01-01T00:00:00Z\",\
             \"owner\":\"\"}"
        );
        let stopped = StateView::new(&record, Status::Stopped, String::new());
        assert_eq!(stopped.pid, 0);
    }

    #[test]
    fn root_has_a_name() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "#4000000000");
    }
}
