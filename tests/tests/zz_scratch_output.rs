use strata_e2e::{runtime_tests, Containerd, RunOptions};
fn loop_output(c: &Containerd) {
    let mut bad = Vec::new();
    for run in 0..40 {
        let id = format!("o-{run}");
        let out = c.run(&RunOptions::new(&id, ["sh", "-c", "head -c 1048576 /dev/zero | tr '\\000' x"])).unwrap();
        if out.stdout.len() != 1 << 20 { bad.push((run, out.stdout.len())); }
    }
    eprintln!("RESULT {} bad: {:?}", c.runtime(), bad);
}
runtime_tests!(loop_output);
