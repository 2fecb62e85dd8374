//! `ps`: the processes of a container, as JSON pids or as the host's `ps`
//! table filtered to them.

use std::process::Command;

use crate::args::{Format, PsArgs};
use crate::commands::common::{Container, Context};
use crate::error::{Error, Result};

/// `strata ps [--format table|json] ID [ps options…]`.
pub fn run(ctx: &Context, args: &PsArgs) -> Result<i32> {
    let container = Container::open(ctx, &args.id)?;
    let pids = container.cgroup(ctx)?.procs()?;
    drop(container);
    if args.format == Format::Json {
        let text =
            serde_json::to_string(&pids).map_err(|e| Error::io("encoding pids", e.into()))?;
        println!("{text}");
        return Ok(0);
    }
    let options = if args.ps_options.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        args.ps_options.clone()
    };
    let out = Command::new("ps")
        .args(&options)
        .output()
        .map_err(|e| Error::io("running ps", e))?;
    if !out.status.success() {
        return Err(Error::State(format!(
            "ps {}: {}: {}",
            options.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{}", filter_ps(&text, &pids)?);
    Ok(0)
}

/// The header of `ps` output and the lines whose PID column is in `pids`.
fn filter_ps(text: &str, pids: &[i32]) -> Result<String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|title| title == "PID")
        .ok_or_else(|| Error::State("couldn't find PID field in ps output".into()))?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_header_and_the_container_lines() {
        let text = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sh\nroot 43 42 sleep\n";
        assert_eq!(
            filter_ps(text, &[42, 43]).expect("filters"),
            "UID PID PPID CMD\nroot 42 1 sh\nroot 43 42 sleep\n"
        );
        assert!(filter_ps("UID CMD\n", &[1]).is_err());
    }
}
