//! scratch
use serde_json::json;
use strata_e2e::{run_case, RUNC};

#[test]
fn scratch() {
    run_case(RUNC, |c| {
        let mut s = c.spec_for("oomdown", &["cat", "/proc/self/oom_score_adj"]).unwrap();
        s["process"]["oomScoreAdj"] = json!(-500);
        let out = c.run_with_spec(c.runtime(), "oomdown", &s).unwrap();
        eprintln!("OOM {out}");
        let mut s = c.spec_for("pers", &["uname", "-m"]).unwrap();
        s["linux"]["personality"] = json!({"domain": "LINUX32"});
        let out = c.run_with_spec(c.runtime(), "pers", &s).unwrap();
        eprintln!("PERS {out}");
        let mut s = c.spec_for("swap", &["true"]).unwrap();
        s["linux"]["sysctl"] = json!({"vm.swappiness": "10"});
        let out = c.run_with_spec(c.runtime(), "swap", &s).unwrap();
        eprintln!("SWAP {out}");
    });
}
