//! The groups of metrics, in report order: each a section of the report
//! and a chart.

/// A group of metrics.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// Key of the group in the metrics and the chart's file stem.
    pub id: &'static str,
    /// Section title.
    pub title: &'static str,
    /// Chart the medians relative to runc's instead of in their units
    /// (for groups whose values span orders of magnitude).
    pub relative_chart: bool,
    /// Give every metric a panel of its own (for metrics of one unit but
    /// very different sizes).
    pub panel_per_metric: bool,
}

/// Every group, in report order.
pub const GROUPS: [Group; 6] = [
    Group {
        id: "start",
        title: "Start latency",
        relative_chart: false,
        panel_per_metric: true,
    },
    Group {
        id: "syscalls",
        title: "System calls in the container",
        relative_chart: true,
        panel_per_metric: false,
    },
    Group {
        id: "fileio",
        title: "File I/O in the container",
        relative_chart: false,
        panel_per_metric: false,
    },
    Group {
        id: "tcp",
        title: "Loopback TCP in the container",
        relative_chart: false,
        panel_per_metric: false,
    },
    Group {
        id: "memory",
        title: "Memory per idle container",
        relative_chart: false,
        panel_per_metric: false,
    },
    Group {
        id: "density",
        title: "Density",
        relative_chart: false,
        panel_per_metric: false,
    },
];
