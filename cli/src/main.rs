//! `strata`: Strata's OCI runtime command line, shaped like runc's so that
//! podman (`--runtime`), Docker (`runtimes` in `daemon.json`) and OCI
//! conformance tools can drive it. Containers run on the native backend;
//! the native backend re-executes this binary with `init` to build each
//! container process.

mod args;
mod check;
mod class;
mod commands;
mod console;
mod error;
mod logging;
mod output;
mod procfs;
mod signals;
mod spec_template;
mod state;
mod timefmt;

use std::sync::OnceLock;

use anyhow::Context as _;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::args::Cli;
use crate::commands::Context;
use crate::logging::Logger;

/// The logger, shared with the `log` facade of the backend crates.
static LOGGER: OnceLock<Logger> = OnceLock::new();

fn main() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == strata_native::INIT_ARG)
    {
        strata_native::init_main();
    }
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// Parses the command line, sets up logging and runs the command; returns
/// the exit code. Errors of the command itself are reported here; only a
/// failure to set up comes back as `Err`.
fn run() -> anyhow::Result<i32> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 1,
            });
        }
    };
    if cli.version {
        print!("{}", version_text());
        return Ok(0);
    }
    let Some(command) = cli.command else {
        Cli::command().print_help().context("printing help")?;
        return Ok(0);
    };
    let logger = Logger::new(cli.log.as_deref(), cli.log_format, cli.debug)
        .with_context(|| format!("opening the log file {:?}", cli.log))?;
    let logger = LOGGER.get_or_init(|| logger);
    if log::set_logger(logger).is_ok() {
        log::set_max_level(if cli.debug {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        });
    }
    if cli.root.as_os_str() == "/" {
        report(logger, "option --root argument should not be set to /");
        return Ok(1);
    }
    let ctx = Context::new(cli.root, cli.class, cli.config);
    log::debug!("running {command:?}");
    match commands::dispatch(&ctx, command) {
        Ok(code) => Ok(code),
        Err(e) => {
            report(logger, &e.to_string());
            Ok(1)
        }
    }
}

/// Reports a failed command on standard error and, when logging goes to a
/// file, as an error line there too (engines read it back).
fn report(logger: &Logger, message: &str) {
    if logger.to_file() {
        logger.line("error", message);
    }
    eprintln!("{message}");
}

/// What `--version` prints.
fn version_text() -> String {
    let mut text = format!(
        "strata version {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        oci_spec::runtime::VERSION
    );
    if let Ok(v) = libseccomp::ScmpVersion::current() {
        text.push_str(&format!(
            "libseccomp: {}.{}.{}\n",
            v.major, v.minor, v.micro
        ));
    }
    text
}
