//! Interleaved rounds over the runtimes, where a failure on one runtime
//! ends that measurement for it alone: the failure is recorded for the
//! report and the other runtimes go on.

use anyhow::Result;
use serde::Serialize;

use crate::runtimes::Runtime;

/// A measurement that failed on one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The runtime.
    pub label: String,
    /// The measurement (`start`, `fileio`, …).
    pub measurement: String,
    /// What went wrong.
    pub error: String,
}

/// Runs `each(index, runtime, round)` for `rounds` rounds, every runtime
/// once per round in order. A runtime whose call fails is left out of the
/// later rounds, and its failure is added to `failures`.
pub fn interleaved(
    runtimes: &[Runtime],
    rounds: usize,
    measurement: &str,
    failures: &mut Vec<Failure>,
    mut each: impl FnMut(usize, &Runtime, usize) -> Result<()>,
) {
    let mut failed = vec![false; runtimes.len()];
    for round in 0..rounds {
        for (i, rt) in runtimes.iter().enumerate() {
            if failed[i] {
                continue;
            }
            if let Err(e) = each(i, rt, round) {
                eprintln!("[{measurement}] {} failed: {e:#}", rt.label);
                failures.push(Failure {
                    label: rt.label.clone(),
                    measurement: measurement.to_owned(),
                    error: format!("{e:#}"),
                });
                failed[i] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    #[test]
    fn a_failing_runtime_drops_out_alone() {
        let rts = [Runtime::runc(), Runtime::strata("native")];
        let mut failures = Vec::new();
        let mut calls = Vec::new();
        interleaved(&rts, 3, "m", &mut failures, |i, rt, r| {
            calls.push((rt.label.clone(), r));
            if i == 1 && r == 1 {
                bail!("boom");
            }
            Ok(())
        });
        let order: Vec<(&str, usize)> = calls.iter().map(|(l, r)| (l.as_str(), *r)).collect();
        assert_eq!(
            order,
            [
                ("runc", 0),
                ("native", 0),
                ("runc", 1),
                ("native", 1),
                ("runc", 2)
            ]
        );
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].label, "native");
        assert_eq!(failures[0].error, "boom");
    }
}
