//! Running external commands with a deadline and collecting their output.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long one `ctr` invocation may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Outcome of a finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit code; a command killed by signal `N` reports `128 + N`, as a
    /// shell would.
    pub code: i32,
    /// Everything written to standard output (lossily decoded).
    pub stdout: String,
    /// Everything written to standard error (lossily decoded).
    pub stderr: String,
}

impl CmdOutput {
    /// True if the command exited with code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Returns `self` if the command succeeded, an error naming it otherwise.
    pub fn ok(self) -> Result<Self> {
        if self.success() {
            Ok(self)
        } else {
            bail!("command failed: {self}")
        }
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// Renders a command line for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        s.push(' ');
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;&|<>".contains(c)) {
            s.push('\'');
            s.push_str(&a.replace('\'', r"'\''"));
            s.push('\'');
        } else {
            s.push_str(&a);
        }
    }
    s
}

fn reader<R: Read + Send + 'static>(mut r: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

fn collect(rx: &mpsc::Receiver<Vec<u8>>) -> String {
    // The pipe closes when the command exits unless it left a child behind
    // that holds it; do not wait for such a child forever.
    let bytes = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn wait_deadline(child: &mut Child, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().context("waiting for child")? {
            return Ok(Some(st));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` to completion, feeding it `stdin` (then closing it; with
/// `None` standard input is `/dev/null`), and collects its output.
///
/// If it has not exited after `timeout`, it is killed and an error carrying
/// whatever it printed is returned: a hung command fails the test instead of
/// hanging it.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<CmdOutput> {
    let command = describe(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning `{command}`"))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
            // Dropping the pipe closes the command's standard input.
        });
    }
    let out_rx = reader(child.stdout.take().expect("stdout is piped"));
    let err_rx = reader(child.stderr.take().expect("stderr is piped"));
    match wait_deadline(&mut child, timeout)? {
        Some(status) => {
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(-1);
            Ok(CmdOutput {
                command,
                code,
                stdout: collect(&out_rx),
                stderr: collect(&err_rx),
            })
        }
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{command}` did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                collect(&out_rx),
                collect(&err_rx)
            )
        }
    }
}

/// Writes an executable file with `contents` at `path`.
///
/// A child process writes it: a file this process held open for writing
/// would be inherited by whatever another test thread forks at that moment,
/// and executing the file would then fail with ETXTBSY.
pub fn write_executable(path: &std::path::Path, contents: &str) -> Result<()> {
    let mut writer = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .context("cannot start /bin/sh")?;
    let mut stdin = writer.stdin.take().context("no stdin pipe")?;
    stdin.write_all(contents.as_bytes())?;
    drop(stdin);
    if !writer.wait()?.success() {
        bail!("cannot write {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_output_and_code() {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "read x; echo out $x; echo err >&2; exit 3"]);
        let out = run(c, Some(b"in\n"), Duration::from_secs(10)).unwrap();
        assert_eq!(out.code, 3);
        assert_eq!(out.stdout, "out in\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn times_out() {
        let mut c = Command::new("/bin/sleep");
        c.arg("30");
        let start = Instant::now();
        let err = run(c, None, Duration::from_millis(200)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(err.to_string().contains("did not finish"), "{err}");
    }

    #[test]
    fn signal_is_128_plus() {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "kill -9 $$"]);
        assert_eq!(run(c, None, Duration::from_secs(10)).unwrap().code, 137);
    }
}
