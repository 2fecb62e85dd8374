//! Named measurements: every number the suite reports is a [`Metric`] of a
//! group (start, syscalls, …), with its raw samples, their summary, and its
//! median relative to runc's.

use serde::Serialize;

use crate::stats::Summary;

/// One measured quantity of one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// The group it belongs to (a report section and a chart).
    pub group: String,
    /// Its name within the group.
    pub name: String,
    /// Unit of the samples.
    pub unit: String,
    /// True if larger values are better (throughput), false for costs.
    pub higher_is_better: bool,
    /// Raw samples in the order measured.
    pub samples: Vec<f64>,
    /// Summary of `samples`.
    pub summary: Summary,
    /// This median divided by runc's median of the same metric; `None`
    /// for runc itself and where runc has no such metric.
    pub ratio_to_runc: Option<f64>,
}

/// How a metric is recorded: its group, name, unit and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    /// See [`Metric::group`].
    pub group: &'a str,
    /// See [`Metric::name`].
    pub name: &'a str,
    /// See [`Metric::unit`].
    pub unit: &'a str,
    /// See [`Metric::higher_is_better`].
    pub higher_is_better: bool,
}

/// Samples collected for one runtime, in first-seen order of the metrics.
#[derive(Debug, Default)]
pub struct Collector {
    entries: Vec<(String, String, String, bool, Vec<f64>)>,
}

impl Collector {
    /// Adds a sample of `key`.
    pub fn push(&mut self, key: Key<'_>, value: f64) {
        match self
            .entries
            .iter_mut()
            .find(|e| e.0 == key.group && e.1 == key.name)
        {
            Some(e) => e.4.push(value),
            None => self.entries.push((
                key.group.to_owned(),
                key.name.to_owned(),
                key.unit.to_owned(),
                key.higher_is_better,
                vec![value],
            )),
        }
    }

    /// Adds all `values` as samples of `key`.
    pub fn extend(&mut self, key: Key<'_>, values: impl IntoIterator<Item = f64>) {
        for v in values {
            self.push(key, v);
        }
    }

    /// The metrics, each summarised.
    pub fn finish(self) -> Vec<Metric> {
        self.entries
            .into_iter()
            .filter_map(|(group, name, unit, higher_is_better, samples)| {
                Some(Metric {
                    summary: Summary::of(&samples)?,
                    group,
                    name,
                    unit,
                    higher_is_better,
                    samples,
                    ratio_to_runc: None,
                })
            })
            .collect()
    }
}

/// Sets `ratio_to_runc` of every metric in `others` from `runc`'s, where
/// both medians are positive (a ratio of a negative growth means nothing).
pub fn set_ratios(runc: &[Metric], others: &mut [Metric]) {
    for m in others {
        m.ratio_to_runc = runc
            .iter()
            .find(|r| r.group == m.group && r.name == m.name)
            .filter(|r| r.summary.median > 0.0 && m.summary.median > 0.0)
            .map(|r| m.summary.median / r.summary.median);
    }
}

/// The metrics of `group` over all `lists`, each name once, in the order
/// first seen (so a metric only some runtimes have still gets a row).
pub fn of_group<'a>(lists: impl IntoIterator<Item = &'a [Metric]>, group: &str) -> Vec<&'a Metric> {
    let mut out: Vec<&Metric> = Vec::new();
    for m in lists.into_iter().flatten().filter(|m| m.group == group) {
        if !out.iter().any(|o| o.name == m.name) {
            out.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Key = Key {
        group: "g",
        name: "a",
        unit: "ms",
        higher_is_better: false,
    };

    #[test]
    fn collects_in_order_and_sets_ratios() {
        let mut runc = Collector::default();
        runc.extend(A, [2.0, 4.0, 3.0]);
        let runc = runc.finish();
        let mut other = Collector::default();
        other.push(Key { name: "b", ..A }, 1.0);
        other.extend(A, [6.0, 6.0]);
        let mut other = other.finish();
        set_ratios(&runc, &mut other);
        assert_eq!(other[0].name, "b");
        assert_eq!(other[0].ratio_to_runc, None);
        assert_eq!(other[1].ratio_to_runc, Some(2.0));
        assert_eq!(other[1].samples, vec![6.0, 6.0]);
        let names: Vec<&str> = of_group([runc.as_slice(), other.as_slice()], "g")
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
