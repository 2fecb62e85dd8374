//! `strata-probe`: one static program that the end-to-end tests and the
//! benchmarks run inside containers (at `/usr/bin/strata-probe` of the test
//! image) to measure what a container costs and to check what it may do.
//! It needs no libc in the image. Each subcommand does one job and prints
//! JSON lines on stdout (`denied` prints `NAME ERRNO` lines):
//!
//! ```text
//! strata-probe syscalls [--iterations N]
//! strata-probe fileio --size MIB --dir DIR
//! strata-probe tcp --seconds S
//! strata-probe isolation [--hidden PATH] [--denied ADDR:PORT]
//! strata-probe denied
//! ```

mod denied;
mod errno;
mod error;
mod fileio;
mod isolation;
mod syscalls;
mod tcp;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::{Error, Result};

const USAGE: &str = "\
usage: strata-probe syscalls [--iterations N]
       strata-probe fileio --size MIB --dir DIR
       strata-probe tcp --seconds S
       strata-probe isolation [--hidden PATH] [--denied ADDR:PORT]
       strata-probe denied";

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Command {
    Syscalls {
        iterations: u64,
    },
    FileIo {
        size_mib: u64,
        dir: PathBuf,
    },
    Tcp {
        seconds: f64,
    },
    Isolation {
        hidden: Option<String>,
        denied: Option<String>,
    },
    Denied,
}

/// The `--flag value` pairs after the subcommand, checked against `known`.
fn flags(args: &[String], known: &[&str]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if !known.contains(&flag.as_str()) {
            return Err(Error::invalid(format!("unknown argument {flag:?}")));
        }
        let value = it
            .next()
            .ok_or_else(|| Error::invalid(format!("{flag} needs a value")))?;
        out.push((flag.clone(), value.clone()));
    }
    Ok(out)
}

fn value<'a>(flags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .rev()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v.as_str())
}

fn number<T: std::str::FromStr>(flags: &[(String, String)], name: &str) -> Result<Option<T>> {
    value(flags, name)
        .map(|v| {
            v.parse()
                .map_err(|_| Error::invalid(format!("{name} takes a number, not {v:?}")))
        })
        .transpose()
}

fn required<T>(v: Option<T>, name: &str) -> Result<T> {
    v.ok_or_else(|| Error::invalid(format!("{name} is required")))
}

fn parse(args: &[String]) -> Result<Command> {
    let (sub, rest) = args
        .split_first()
        .ok_or_else(|| Error::invalid("no subcommand"))?;
    Ok(match sub.as_str() {
        "syscalls" => {
            let f = flags(rest, &["--iterations"])?;
            Command::Syscalls {
                iterations: number(&f, "--iterations")?.unwrap_or(syscalls::DEFAULT_ITERATIONS),
            }
        }
        "fileio" => {
            let f = flags(rest, &["--size", "--dir"])?;
            Command::FileIo {
                size_mib: required(number(&f, "--size")?, "--size")?,
                dir: required(value(&f, "--dir"), "--dir")?.into(),
            }
        }
        "tcp" => {
            let f = flags(rest, &["--seconds"])?;
            Command::Tcp {
                seconds: required(number(&f, "--seconds")?, "--seconds")?,
            }
        }
        "isolation" => {
            let f = flags(rest, &["--hidden", "--denied"])?;
            Command::Isolation {
                hidden: value(&f, "--hidden").map(str::to_owned),
                denied: value(&f, "--denied").map(str::to_owned),
            }
        }
        "denied" => {
            flags(rest, &[])?;
            Command::Denied
        }
        other => return Err(Error::invalid(format!("unknown subcommand {other:?}"))),
    })
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Syscalls { iterations } => syscalls::run(iterations),
        Command::FileIo { size_mib, dir } => fileio::run(size_mib, &dir),
        Command::Tcp { seconds } => tcp::run(seconds),
        Command::Isolation { hidden, denied } => {
            isolation::run(hidden.as_deref(), denied.as_deref());
            Ok(())
        }
        Command::Denied => {
            denied::run();
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let cmd = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("strata-probe: {}\n{USAGE}", e.what);
            return ExitCode::from(2);
        }
    };
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            p(&["syscalls"]).unwrap(),
            Command::Syscalls {
                iterations: syscalls::DEFAULT_ITERATIONS
            }
        );
        assert_eq!(
            p(&["syscalls", "--iterations", "7"]).unwrap(),
            Command::Syscalls { iterations: 7 }
        );
        assert_eq!(
            p(&["fileio", "--dir", "/t", "--size", "3"]).unwrap(),
            Command::FileIo {
                size_mib: 3,
                dir: "/t".into()
            }
        );
        assert_eq!(
            p(&["tcp", "--seconds", "0.5"]).unwrap(),
            Command::Tcp { seconds: 0.5 }
        );
        assert_eq!(
            p(&["isolation", "--denied", "127.0.0.1:9"]).unwrap(),
            Command::Isolation {
                hidden: None,
                denied: Some("127.0.0.1:9".into())
            }
        );
        assert_eq!(p(&["denied"]).unwrap(), Command::Denied);
    }

    #[test]
    fn bad_arguments() {
        assert!(p(&[]).is_err());
        assert!(p(&["nope"]).is_err());
        assert!(p(&["fileio", "--dir", "/t"]).is_err());
        assert!(p(&["syscalls", "--iterations", "x"]).is_err());
        assert!(p(&["syscalls", "--iterations"]).is_err());
        assert!(p(&["denied", "--x", "1"]).is_err());
    }
}
