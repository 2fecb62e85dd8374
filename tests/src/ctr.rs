//! `ctr` helpers on a [`Containerd`] fixture: run containers in the
//! foreground or detached, exec, kill, list and delete tasks. Every command
//! has a timeout, and every container ID used is tracked for cleanup and the
//! leftover check.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::command::{self, CmdOutput, DEFAULT_TIMEOUT};
use crate::containerd::Containerd;
use crate::image::IMAGE_PATH_ENV;

/// What to run with `ctr run`; build with [`RunOptions::new`] and the
/// chained setters.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--runtime`; `None` means the fixture's runtime.
    pub runtime: Option<String>,
    /// Container ID.
    pub id: String,
    /// Command and arguments; empty runs the image's default command.
    pub args: Vec<String>,
    /// Image; `None` means the fixture's busybox image.
    pub image: Option<String>,
    /// `--memory-limit` in bytes.
    pub memory_limit: Option<u64>,
    /// `--env` entries (`KEY=value`).
    pub env: Vec<String>,
    /// `--annotation` entries (key, value).
    pub annotations: Vec<(String, String)>,
    /// `--label` entries (key, value).
    pub labels: Vec<(String, String)>,
    /// Bytes fed to `ctr`'s standard input, which is then closed.
    pub stdin: Option<Vec<u8>>,
    /// Further raw `ctr run` flags, placed before the image.
    pub extra: Vec<String>,
    /// How long `ctr` may take.
    pub timeout: Duration,
}

impl RunOptions {
    /// Runs `args` in a container called `id`.
    pub fn new<I, S>(id: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            runtime: None,
            id: id.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            image: None,
            memory_limit: None,
            env: Vec::new(),
            annotations: Vec::new(),
            labels: Vec::new(),
            stdin: None,
            extra: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets `--runtime`.
    pub fn runtime(mut self, rt: &str) -> Self {
        self.runtime = Some(rt.to_owned());
        self
    }

    /// Sets the image.
    pub fn image(mut self, image: &str) -> Self {
        self.image = Some(image.to_owned());
        self
    }

    /// Sets `--memory-limit`.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Adds `--env KEY=value`.
    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.to_owned());
        self
    }

    /// Adds `--annotation key=value`.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds `--label key=value`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Feeds `data` to the container's standard input.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Adds a raw `ctr run` flag.
    pub fn flag(mut self, flag: &str) -> Self {
        self.extra.push(flag.to_owned());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Passes the Strata configuration file `path` as the runtime options'
    /// `ConfigPath` (`--runtime-config-path`).
    pub fn runtime_config(self, path: &std::path::Path) -> Self {
        self.flag("--runtime-config-path")
            .flag(&path.display().to_string())
    }
}

/// One row of `ctr task ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// Container ID.
    pub id: String,
    /// PID of the task's init process as reported by the shim.
    pub pid: u32,
    /// `RUNNING`, `STOPPED`, `CREATED`, `PAUSED`, ...
    pub status: String,
}

/// Parses the output of `ctr task ls`.
pub fn parse_task_list(text: &str) -> Vec<TaskInfo> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(TaskInfo {
                id: f.next()?.to_owned(),
                pid: f.next()?.parse().ok()?,
                status: f.next()?.to_owned(),
            })
        })
        .collect()
}

/// The metric lines of `ctr task metrics` output (table format): name and
/// value.
pub fn metric_table(out: &CmdOutput) -> Vec<(String, String)> {
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("METRIC"))
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(char::is_whitespace)?;
            Some((k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// The numeric value of metric `name` in `ctr task metrics` output, if it
/// is there.
pub fn metric(out: &CmdOutput, name: &str) -> Option<u64> {
    metric_table(out)
        .into_iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// The exit code `ctr task rm` reports: it warns
/// `task <id> exit with non-zero exit code <N>` for a non-zero status and
/// says nothing for zero.
pub fn exit_code_from_task_rm(out: &CmdOutput) -> Option<i32> {
    const MARK: &str = "exit with non-zero exit code ";
    let all = format!("{}\n{}", out.stderr, out.stdout);
    match all.find(MARK) {
        Some(i) => all[i + MARK.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .ok(),
        None if out.success() => Some(0),
        None => None,
    }
}

impl Containerd {
    fn run_command(&self, opts: &RunOptions, detach: bool) -> std::process::Command {
        self.track(&opts.id);
        let mut c = self.ctr_command();
        c.arg("run");
        if detach {
            c.arg("-d");
        } else {
            c.arg("--rm");
        }
        c.arg("--fifo-dir").arg(self.fifo_dir());
        c.arg("--runtime")
            .arg(opts.runtime.as_deref().unwrap_or(self.runtime()));
        if let Some(m) = opts.memory_limit {
            c.arg("--memory-limit").arg(m.to_string());
        }
        for e in &opts.env {
            c.arg("--env").arg(e);
        }
        for (k, v) in &opts.annotations {
            c.arg("--annotation").arg(format!("{k}={v}"));
        }
        for (k, v) in &opts.labels {
            c.arg("--label").arg(format!("{k}={v}"));
        }
        c.args(&opts.extra);
        c.arg(opts.image.as_deref().unwrap_or(self.image()));
        c.arg(&opts.id);
        c.args(&opts.args);
        c
    }

    /// Writes a Strata configuration file `name` into the fixture
    /// directory, for [`RunOptions::runtime_config`].
    pub fn write_config(&self, name: &str, text: &str) -> Result<PathBuf> {
        let dir = self.dir().join("strata-configs");
        fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        fs::write(&path, text)?;
        Ok(path)
    }

    /// `ctr run --rm`: runs a container in the foreground and returns its
    /// exit code and output (`ctr` exits with the container's code).
    pub fn run(&self, opts: &RunOptions) -> Result<CmdOutput> {
        let c = self.run_command(opts, false);
        command::run(c, opts.stdin.as_deref(), opts.timeout)
    }

    /// `ctr run -d`: starts a container and returns once it runs. The caller
    /// removes it (e.g. [`Containerd::remove`]).
    pub fn run_detached(&self, opts: &RunOptions) -> Result<CmdOutput> {
        let c = self.run_command(opts, true);
        command::run(c, opts.stdin.as_deref(), opts.timeout)?.ok()
    }

    /// A complete OCI spec (from `ctr oci spec`) that runs `args` with the
    /// unpacked test rootfs (read-only) as root and this namespace's cgroup
    /// path, for [`Containerd::run_with_spec`]. Edit it before use.
    pub fn spec_for(&self, id: &str, args: &[&str]) -> Result<Value> {
        let out = self.ctr(&["oci", "spec"])?.ok()?;
        let mut spec: Value =
            serde_json::from_str(&out.stdout).context("parsing `ctr oci spec` output")?;
        let rootfs = self.rootfs()?;
        spec["process"]["args"] = serde_json::json!(args);
        spec["process"]["env"] = serde_json::json!([IMAGE_PATH_ENV]);
        spec["process"]["cwd"] = serde_json::json!("/");
        spec["root"] = serde_json::json!({ "path": rootfs, "readonly": true });
        spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}/{id}", self.namespace()));
        Ok(spec)
    }

    /// `ctr run --rm --config SPEC ID`: runs a container from a complete OCI
    /// spec (for what `ctr run` has no flag for, such as the hostname).
    pub fn run_with_spec(&self, runtime: &str, id: &str, spec: &Value) -> Result<CmdOutput> {
        let c = self.spec_run_command(runtime, id, spec, false)?;
        command::run(c, None, DEFAULT_TIMEOUT)
    }

    /// `ctr run -d --config SPEC ID`: starts a container from a complete OCI
    /// spec and returns once it runs. The caller removes it (e.g.
    /// [`Containerd::remove`]).
    pub fn run_detached_with_spec(
        &self,
        runtime: &str,
        id: &str,
        spec: &Value,
    ) -> Result<CmdOutput> {
        let c = self.spec_run_command(runtime, id, spec, true)?;
        command::run(c, None, DEFAULT_TIMEOUT)?.ok()
    }

    fn spec_run_command(
        &self,
        runtime: &str,
        id: &str,
        spec: &Value,
        detach: bool,
    ) -> Result<std::process::Command> {
        self.track(id);
        let specs = self.dir().join("specs");
        fs::create_dir_all(&specs)?;
        let file: PathBuf = specs.join(format!("{id}.json"));
        fs::write(&file, serde_json::to_vec_pretty(spec)?)?;
        let mut c = self.ctr_command();
        c.arg("run")
            .arg(if detach { "-d" } else { "--rm" })
            .arg("--fifo-dir")
            .arg(self.fifo_dir())
            .arg("--runtime")
            .arg(runtime)
            .arg("--config")
            .arg(&file)
            .arg(id);
        Ok(c)
    }

    /// `ctr task exec --exec-id EXEC ID ARGS...`: output and exit code of a
    /// process run in a running container.
    pub fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> Result<CmdOutput> {
        let mut c = self.ctr_command();
        c.args(["tasks", "exec", "--fifo-dir"])
            .arg(self.fifo_dir())
            .args(["--exec-id", exec_id, id])
            .args(args);
        command::run(c, None, DEFAULT_TIMEOUT)
    }

    /// `ctr task kill [-s SIGNAL] [-a] ID`.
    pub fn kill(&self, id: &str, signal: Option<&str>, all: bool) -> Result<CmdOutput> {
        let mut args = vec!["tasks", "kill"];
        if let Some(s) = signal {
            args.extend(["-s", s]);
        }
        if all {
            args.push("-a");
        }
        args.push(id);
        self.ctr(&args)
    }

    /// `ctr task ls`, parsed.
    pub fn tasks(&self) -> Result<Vec<TaskInfo>> {
        Ok(parse_task_list(&self.ctr(&["tasks", "ls"])?.ok()?.stdout))
    }

    /// The task of container `id`, if listed.
    pub fn task(&self, id: &str) -> Result<Option<TaskInfo>> {
        Ok(self.tasks()?.into_iter().find(|t| t.id == id))
    }

    /// Polls `ctr task ls` until `id` has `status`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Result<TaskInfo> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let t = self.task(id)?;
            if let Some(t) = &t {
                if t.status == status {
                    return Ok(t.clone());
                }
            }
            last = t.or(last);
            if Instant::now() >= deadline {
                bail!("task {id} did not reach {status} within {timeout:?}; last seen: {last:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until `check` (a command run with `ctr task exec`) exits 0,
    /// e.g. to wait until the container's init has set itself up.
    pub fn wait_exec_ok(&self, id: &str, check: &[&str], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut n = 0;
        loop {
            n += 1;
            let out = self.exec(id, &format!("wait-{n}"), check)?;
            if out.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{check:?} in {id} did not succeed within {timeout:?}: {out}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ctr task rm ID`: deletes a stopped task and returns its exit code.
    pub fn delete_task(&self, id: &str) -> Result<i32> {
        let out = self.ctr(&["tasks", "rm", id])?.ok()?;
        exit_code_from_task_rm(&out).with_context(|| format!("no exit code in {out}"))
    }

    /// `ctr container rm ID`.
    pub fn delete_container(&self, id: &str) -> Result<()> {
        self.ctr(&["containers", "rm", id])?.ok()?;
        Ok(())
    }

    /// Kills (SIGKILL, all processes) and removes container `id` with its
    /// task; returns the task's exit code.
    pub fn remove(&self, id: &str) -> Result<i32> {
        if self.task(id)?.is_some_and(|t| t.status != "STOPPED") {
            self.kill(id, Some("SIGKILL"), true)?.ok()?;
            self.wait_status(id, "STOPPED", Duration::from_secs(20))?;
        }
        let code = self.delete_task(id)?;
        self.delete_container(id)?;
        Ok(code)
    }

    /// IDs listed by `ctr containers ls -q`.
    pub fn containers(&self) -> Result<Vec<String>> {
        Ok(self
            .ctr(&["containers", "ls", "-q"])?
            .ok()?
            .stdout
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_list() {
        let t = "TASK    PID     STATUS    \nd1      8048    RUNNING\nd2 0 STOPPED\n";
        assert_eq!(
            parse_task_list(t),
            vec![
                TaskInfo {
                    id: "d1".into(),
                    pid: 8048,
                    status: "RUNNING".into()
                },
                TaskInfo {
                    id: "d2".into(),
                    pid: 0,
                    status: "STOPPED".into()
                },
            ]
        );
    }

    #[test]
    fn task_rm_code() {
        let mk = |code, stderr: &str| CmdOutput {
            command: String::new(),
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        };
        let w = "time=\"x\" level=warning msg=\"task d1 exit with non-zero exit code 137\"\n";
        assert_eq!(exit_code_from_task_rm(&mk(0, w)), Some(137));
        assert_eq!(exit_code_from_task_rm(&mk(0, "")), Some(0));
        assert_eq!(exit_code_from_task_rm(&mk(1, "ctr: boom")), None);
    }
}
