//! `exec`: runs a new process in a container, described by `--process`
//! or by the container's own process with the command and flags applied.
//! In the foreground it waits and exits with the process's exit code.

use std::os::fd::OwnedFd;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};
use serde_json::{json, Value};

use crate::args::ExecArgs;
use crate::commands::common::{check_console, Container, Context};
use crate::console::{self, Relay};
use crate::error::{Error, Result};
use crate::output::write_pid_file;
use crate::signals::{reap_exited, wait_forwarding, Blocked};
use crate::state::Status;

/// `strata exec`.
pub fn run(ctx: &Context, args: &ExecArgs) -> Result<i32> {
    let container = Container::open(ctx, &args.id)?;
    match container.status(ctx) {
        Status::Stopped => return Err(Error::State("cannot exec in a stopped container".into())),
        Status::Paused if !args.ignore_paused => {
            return Err(Error::State(
                "cannot exec in a paused container (use --ignore-paused to override)".into(),
            ))
        }
        _ => {}
    }
    let process = process(args, &container.spec)?;
    let terminal = process.terminal().unwrap_or(false);
    check_console(terminal, args.console_socket.is_some(), args.detach)?;
    let made = ctx.runtime()?.exec(
        container.id(),
        &container.record.bundle,
        &container.spec,
        container.record.pid,
        process,
        args.preserve_fds,
    )?;
    let pid = made.pid;
    reap_exited(Some(pid));
    let terminal = match hand_over(args, pid, made.terminal) {
        Ok(terminal) => terminal,
        Err(e) => {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            return Err(e);
        }
    };
    drop(container);
    if args.detach {
        return Ok(0);
    }
    let blocked = Blocked::block()?;
    let relay = terminal.map(Relay::start).transpose()?;
    let code = wait_forwarding(pid, &blocked, relay.as_ref());
    if let Some(relay) = relay {
        relay.finish();
    }
    code
}

/// Sends the terminal to the console socket (if asked) and writes the pid
/// file; returns the terminal a foreground exec relays.
fn hand_over(args: &ExecArgs, pid: i32, terminal: Option<OwnedFd>) -> Result<Option<OwnedFd>> {
    let terminal = match (terminal, &args.console_socket) {
        (Some(master), Some(socket)) => {
            console::send_master(socket, &master)?;
            None
        }
        (terminal, _) => terminal,
    };
    if let Some(pid_file) = &args.pid_file {
        write_pid_file(pid_file, pid)?;
    }
    Ok(terminal)
}

/// The process to run: the `--process` file, or the container's process
/// with the command, terminal, working directory, environment, user,
/// groups, capabilities and no-new-privileges flag from the command line.
fn process(args: &ExecArgs, spec: &Spec) -> Result<Process> {
    let mut value = match &args.process {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| Error::path("reading", path, e))?;
            serde_json::from_slice::<Value>(&text)
                .map_err(|e| Error::Spec(format!("parsing {}: {e}", path.display())))?
        }
        None => {
            if args.command.is_empty() {
                return Err(Error::Usage("exec args cannot be empty".into()));
            }
            let base = spec.process().clone().unwrap_or_default();
            let mut value = serde_json::to_value(base)
                .map_err(|e| Error::io("encoding the process", e.into()))?;
            value["args"] = json!(args.command);
            value["terminal"] = json!(args.tty);
            value
        }
    };
    if args.process.is_some() && args.tty {
        value["terminal"] = json!(true);
    }
    if let Some(cwd) = &args.cwd {
        value["cwd"] = json!(cwd);
    }
    if !args.env.is_empty() {
        let mut env: Vec<Value> = value["env"].as_array().cloned().unwrap_or_default();
        env.extend(args.env.iter().map(|e| json!(e)));
        value["env"] = Value::Array(env);
    }
    if let Some(user) = &args.user {
        let (uid, gid) = parse_user(user)?;
        value["user"]["uid"] = json!(uid);
        if let Some(gid) = gid {
            value["user"]["gid"] = json!(gid);
        }
    }
    if !args.additional_gids.is_empty() {
        let mut gids: Vec<Value> = value["user"]["additionalGids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        gids.extend(args.additional_gids.iter().map(|g| json!(g)));
        value["user"]["additionalGids"] = Value::Array(gids);
    }
    for cap in &args.cap {
        for set in ["bounding", "effective", "permitted", "ambient"] {
            let mut caps: Vec<Value> = value["capabilities"][set]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !caps.iter().any(|c| c == cap.as_str()) {
                caps.push(json!(cap));
            }
            value["capabilities"][set] = Value::Array(caps);
        }
    }
    if args.no_new_privs {
        value["noNewPrivileges"] = json!(true);
    }
    let process: Process =
        serde_json::from_value(value).map_err(|e| Error::Spec(format!("invalid process: {e}")))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Usage("args must not be empty".into()));
    }
    Ok(process)
}

/// Parses `uid[:gid]`.
fn parse_user(text: &str) -> Result<(u32, Option<u32>)> {
    let (uid, gid) = match text.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (text, None),
    };
    let uid = uid
        .parse()
        .map_err(|e| Error::Usage(format!("bad uid: {e}")))?;
    let gid = gid
        .map(|g| g.parse().map_err(|e| Error::Usage(format!("bad gid: {e}"))))
        .transpose()?;
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn exec_args(line: &[&str]) -> ExecArgs {
        let cli =
            crate::args::Cli::try_parse_from(["strata", "exec"].iter().chain(line.iter()).copied())
                .expect("parses");
        match cli.command {
            Some(crate::args::Command::Exec(args)) => *args,
            other => panic!("not exec: {other:?}"),
        }
    }

    #[test]
    fn command_line_overrides_the_container_process() {
        let spec = Spec::default();
        let args = exec_args(&[
            "-t",
            "--cwd",
            "/tmp",
            "-e",
            "A=1",
            "-u",
            "7:8",
            "-g",
            "9",
            "--cap",
            "CAP_SYS_ADMIN",
            "c1",
            "sh",
            "-c",
            "echo hi",
        ]);
        assert_eq!(args.command, ["sh", "-c", "echo hi"]);
        let p = process(&args, &spec).expect("process");
        assert_eq!(
            p.args().as_deref(),
            Some(&["sh".to_owned(), "-c".into(), "echo hi".into()][..])
        );
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert!(p.env().as_ref().expect("env").contains(&"A=1".to_owned()));
        assert_eq!((p.user().uid(), p.user().gid()), (7, 8));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[9][..]));
        let caps = p.capabilities().as_ref().expect("caps");
        assert!(caps
            .bounding()
            .as_ref()
            .expect("bounding")
            .contains(&oci_spec::runtime::Capability::SysAdmin));
    }

    #[test]
    fn empty_command_and_bad_users_fail() {
        let spec = Spec::default();
        let err = process(&exec_args(&["c1"]), &spec).expect_err("no args");
        assert_eq!(err.to_string(), "exec args cannot be empty");
        assert!(parse_user("x").is_err());
        assert_eq!(parse_user("5").expect("uid"), (5, None));
        assert_eq!(parse_user("5:6").expect("uid:gid"), (5, Some(6)));
    }
}
