//! The command line: global flags and one subcommand per verb, with the
//! names, short forms and defaults that OCI runtime callers (podman's
//! conmon, Docker's containerd shim, conformance tools) pass.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where container state lives unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/strata";

/// `strata [global flags] COMMAND [flags] [args]`.
#[derive(Debug, Parser)]
#[command(
    name = "strata",
    about = "Strata's OCI runtime: runs containers from bundles, like runc",
    disable_version_flag = true,
    subcommand_required = false
)]
pub struct Cli {
    /// Directory holding the state of each container.
    #[arg(long, global = true, default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub root: PathBuf,
    /// File to write log lines (and errors) to; standard error by default.
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Format of the log lines.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Also log debug messages.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for compatibility: the cgroups path is used as a cgroupfs path
    /// (`slice:prefix:name` becomes `/slice/prefix-name.scope`).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for compatibility; checkpointing is not supported.
    #[arg(long, global = true, value_name = "PATH")]
    pub criu: Option<String>,
    /// Accepted for compatibility (`auto`, `true` or `false`).
    #[arg(long, value_name = "auto|true|false")]
    pub rootless: Option<String>,
    /// Runtime class to run new containers on (overrides the spec's
    /// `io.strata.runtime-class` annotation and the configured default).
    #[arg(long, global = true, value_name = "NAME")]
    pub class: Option<String>,
    /// Strata configuration file (default: `$STRATA_CONFIG`, then
    /// `/etc/strata/config.toml`, then the built-in classes).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time="…" level=… msg="…"`.
    Text,
    /// One JSON object per line: `{"level":…,"msg":…,"time":…}`.
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container whose process waits for `start`.
    Create(CreateArgs),
    /// Let a created container run its process.
    Start(IdArg),
    /// Create and start a container; unless detached, wait for it, delete
    /// it and exit with its exit code.
    Run(RunArgs),
    /// Print the state of a container as JSON.
    State(IdArg),
    /// Send a signal to a container's init (or, with --all, every process).
    Kill(KillArgs),
    /// Delete a stopped (or, with --force, any) container.
    Delete(DeleteArgs),
    /// Run a new process in a container.
    Exec(Box<ExecArgs>),
    /// List the containers under the root.
    #[command(alias = "ls")]
    List(ListArgs),
    /// List the processes of a container.
    Ps(PsArgs),
    /// Freeze every process of a container.
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Change a container's resource limits.
    Update(Box<UpdateArgs>),
    /// Print a container's resource usage.
    Events(EventsArgs),
    /// Write a default config.json into a bundle.
    Spec(SpecArgs),
    /// Print the OCI runtime features JSON.
    Features,
    /// Report what this host supports and which runtime classes can run.
    Check,
}

/// A command that takes only the container id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The container id.
    pub id: String,
}

/// Flags shared by `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The bundle directory (default: the current directory).
    #[arg(short = 'b', long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// File to write the container's init pid to.
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the master side of the container's terminal to.
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Accepted for compatibility; the root is always pivoted.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for compatibility.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass descriptors 3 to 3+N-1 on to the container's process.
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
}

/// `run`: `create`'s flags plus `--detach`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Return once the container runs, instead of waiting for it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Accepted for compatibility.
    #[arg(long = "keep")]
    pub keep: bool,
    /// The create flags and the id.
    #[command(flatten)]
    pub create: CreateArgs,
}

/// `kill ID [SIGNAL]`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal every process of the container, not only its init.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// The container id.
    pub id: String,
    /// The signal: a name, with or without `SIG`, or a number (default SIGTERM).
    #[arg(allow_negative_numbers = true)]
    pub signal: Option<String>,
}

/// `delete [--force] ID`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill the container first if it is still running.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The container id.
    pub id: String,
}

/// `exec [flags] ID [COMMAND [ARG…]]`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A JSON file holding the OCI process to run (instead of COMMAND).
    #[arg(short = 'p', long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Return once the process runs, instead of waiting for it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the master side of the process's terminal to.
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Working directory of the process.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (`NAME=VALUE`).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// User to run as: `uid[:gid]`.
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Extra supplementary group ids.
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Extra capabilities (`CAP_…`).
    #[arg(short = 'c', long = "cap", value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Run even in a paused container.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Accepted for compatibility; SELinux is not supported.
    #[arg(long = "process-label", value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Accepted for compatibility; AppArmor is not supported.
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// Pass descriptors 3 to 3+N-1 on to the process.
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Output formats of `list` and `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
}

/// `list [--format F] [--quiet]`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only the ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `ps [--format F] ID [ps options…]`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The container id.
    pub id: String,
    /// Options for the host's `ps` (table format; default `-ef`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

/// `update [limits…] ID`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// A JSON file (`-` for standard input) holding OCI `linux.resources`.
    #[arg(short = 'r', long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g allowed; -1 for none).
    #[arg(long, allow_negative_numbers = true)]
    pub memory: Option<String>,
    /// Memory soft limit in bytes.
    #[arg(long = "memory-reservation", allow_negative_numbers = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes.
    #[arg(long = "memory-swap", allow_negative_numbers = true)]
    pub memory_swap: Option<String>,
    /// CPU CFS quota in microseconds per period (-1 for none).
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares", alias = "cpu-share")]
    pub cpu_shares: Option<u64>,
    /// CPU realtime period in microseconds.
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long = "cpu-rt-runtime", allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs the container may run on (`0-2,4`).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 or 0 for none).
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10 to 1000).
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// The container id.
    pub id: String,
}

/// `events [--stats] [--interval D] ID`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print the statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Time between statistics (`5s`, `500ms`, `1m`).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// The container id.
    pub id: String,
}

/// `spec [--bundle B] [--rootless]`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// The bundle directory to write config.json into (default: the
    /// current directory).
    #[arg(short = 'b', long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Write a spec for a container run by an unprivileged user.
    #[arg(long = "rootless")]
    pub rootless: bool,
}
