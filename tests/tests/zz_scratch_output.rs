use std::process::Command;
use std::time::Duration;
use strata_e2e::{runtime_tests, Containerd};
fn loop_output(c: &Containerd) {
    let mut bad = Vec::new();
    let tag = if c.runtime().contains("runc") { "runc" } else { "strata" };
    for run in 0..40 {
        let id = format!("o-{run}");
        let base = c.ctr_command();
        let trace = format!("/tmp/ctrtrace-{tag}-{run}");
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-tt", "-e", "trace=openat,read,close,exit_group,write", "-e", "abbrev=all", "-s", "0", "-o", &trace, "ctr"]);
        cmd.args(base.get_args());
        cmd.args(["run", "--rm", "--fifo-dir"]).arg(c.fifo_dir()).args(["--runtime", c.runtime(), c.image(), &id, "sh", "-c", "head -c 1048576 /dev/zero | tr '\\000' x"]);
        c.track(&id);
        let out = strata_e2e::command::run(cmd, None, Duration::from_secs(120)).unwrap();
        if out.stdout.len() != 1 << 20 { bad.push((run, out.stdout.len(), trace)); } else { let _ = std::fs::remove_file(&trace); }
    }
    eprintln!("RESULT {} bad: {:?}", c.runtime(), bad);
}
runtime_tests!(loop_output);
