//! Writing an OCI `linux.resources` into a cgroup, on v1 and v2.
//!
//! Only what the spec sets is written. Supported: memory limit, reservation,
//! swap, swappiness and OOM-killer switch (v1); cpu shares (weight on v2),
//! quota and period; cpuset cpus and mems; the pids limit; and on v2 the
//! `unified` map of raw interface files. Other settings are logged and
//! ignored.

use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::hierarchy::Version;
use crate::sys;

/// The v1 value of an unset (unlimited) memory limit is anything this large.
const UNLIMITED: u64 = i64::MAX as u64 / 2;

/// Converts v1 cpu shares (2..=262144) to a v2 cpu weight (1..=10000), the
/// same linear mapping other OCI runtimes use, so a container gets the same
/// share on either version.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// `-1` (or any negative) as the v2 `max` keyword, else the number.
fn max_or(value: i64) -> String {
    if value < 0 {
        "max".to_owned()
    } else {
        value.to_string()
    }
}

impl Cgroup {
    /// Writes the limits `r` sets into the cgroup.
    ///
    /// Memory (v1 `memory.limit_in_bytes`, v2 `memory.max`; `-1` is
    /// unlimited), reservation (`memory.soft_limit_in_bytes` /
    /// `memory.low`), swap (v1 `memory.memsw.limit_in_bytes`, the
    /// memory+swap total, if the kernel accounts swap; v2 `memory.swap.max`,
    /// the swap alone, i.e. `swap - limit`; a swap of 0 counts as unset), cpu
    /// shares (`cpu.shares` / `cpu.weight` via [`shares_to_weight`]; 0 counts
    /// as unset), quota and period (`cpu.cfs_*_us` / `cpu.max`), cpuset cpus
    /// and mems, and `pids.max` (a limit of 0 or less is `max`).
    ///
    /// On v1, limit and memory+swap are written in whichever order keeps the
    /// kernel's rule limit ≤ memory+swap true throughout; an unlimited memory
    /// limit with no swap given also lifts memory+swap, which would otherwise
    /// forbid it.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        match self.version() {
            Version::V1 => self.apply_v1(r)?,
            Version::V2 => self.apply_v2(r)?,
        }
        self.note_unsupported(r);
        Ok(())
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidResource {
            cgroup: self.name().to_owned(),
            reason: reason.into(),
        }
    }

    fn apply_v1(&self, r: &LinuxResources) -> Result<()> {
        if let Some(mem) = r.memory() {
            if wants_memory(mem) {
                self.memory_v1(&self.dir_for("memory")?, mem)?;
            }
        }
        if let Some(cpu) = r.cpu() {
            if cpu.shares().is_some_and(|s| s != 0)
                || cpu.quota().is_some()
                || cpu.period().is_some()
            {
                cpu_v1(&self.dir_for("cpu")?, cpu)?;
            }
            if wants_cpuset(cpu) {
                cpuset(&self.dir_for("cpuset")?, cpu)?;
            }
        }
        if let Some(pids) = r.pids() {
            sys::write(
                &self.dir_for("pids")?.join("pids.max"),
                &max_or(positive_or_max(pids.limit())),
            )?;
        }
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(self.invalid("linux.resources.unified needs cgroup v2"));
        }
        Ok(())
    }

    fn memory_v1(&self, dir: &Path, mem: &LinuxMemory) -> Result<()> {
        let limit_file = dir.join("memory.limit_in_bytes");
        let memsw_file = dir.join("memory.memsw.limit_in_bytes");
        let limit = mem.limit();
        let mut swap = mem.swap().filter(|&s| s != 0);
        let has_memsw = memsw_file.exists();
        if has_memsw && limit == Some(-1) && swap.is_none() {
            swap = Some(-1);
        }
        if swap.is_some() && !has_memsw {
            log::warn!(
                "cgroup {:?}: swap limit requested but this kernel does not account swap \
                 ({} is missing); ignoring it",
                self.name(),
                memsw_file.display()
            );
            swap = None;
        }
        match (limit, swap) {
            (Some(l), Some(s)) => {
                if s >= 0 && (l < 0 || s < l) {
                    return Err(self.invalid(format!(
                        "memory+swap limit {s} is below the memory limit {l}"
                    )));
                }
                let current = read_u64(&limit_file)?;
                if s < 0 || s as u64 >= current {
                    // Raising: memory+swap first makes room for the limit.
                    sys::write(&memsw_file, &s.to_string())?;
                    sys::write(&limit_file, &l.to_string())?;
                } else {
                    // Lowering: the limit first, so memory+swap may follow.
                    sys::write(&limit_file, &l.to_string())?;
                    sys::write(&memsw_file, &s.to_string())?;
                }
            }
            (Some(l), None) => sys::write(&limit_file, &l.to_string())?,
            (None, Some(s)) => sys::write(&memsw_file, &s.to_string())?,
            (None, None) => {}
        }
        if let Some(r) = mem.reservation() {
            sys::write(&dir.join("memory.soft_limit_in_bytes"), &r.to_string())?;
        }
        if let Some(s) = mem.swappiness() {
            if s > 100 {
                return Err(self.invalid(format!("swappiness {s} is above 100")));
            }
            sys::write(&dir.join("memory.swappiness"), &s.to_string())?;
        }
        if let Some(disable) = mem.disable_oom_killer() {
            sys::write(
                &dir.join("memory.oom_control"),
                if disable { "1" } else { "0" },
            )?;
        }
        Ok(())
    }

    fn apply_v2(&self, r: &LinuxResources) -> Result<()> {
        let Some(dir) = self.paths().into_iter().next() else {
            return Ok(());
        };
        if let Some(mem) = r.memory() {
            self.memory_v2(&dir, mem)?;
        }
        if let Some(cpu) = r.cpu() {
            if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
                sys::write(
                    &dir.join("cpu.weight"),
                    &shares_to_weight(shares).to_string(),
                )?;
            }
            if let Some(value) = cpu_max(&dir, cpu.quota(), cpu.period())? {
                sys::write(&dir.join("cpu.max"), &value)?;
            }
            if wants_cpuset(cpu) {
                cpuset(&dir, cpu)?;
            }
        }
        if let Some(pids) = r.pids() {
            sys::write(
                &dir.join("pids.max"),
                &max_or(positive_or_max(pids.limit())),
            )?;
        }
        if let Some(unified) = r.unified() {
            let mut entries: Vec<_> = unified.iter().collect();
            entries.sort();
            for (key, value) in entries {
                if key.is_empty() || key.contains('/') || key == "." || key == ".." {
                    return Err(self.invalid(format!("unified key {key:?} is not a file name")));
                }
                sys::write(&dir.join(key), value)?;
            }
        }
        Ok(())
    }

    fn memory_v2(&self, dir: &Path, mem: &LinuxMemory) -> Result<()> {
        let limit = mem.limit();
        if let Some(l) = limit {
            sys::write(&dir.join("memory.max"), &max_or(l))?;
        }
        if let Some(s) = mem.swap().filter(|&s| s != 0) {
            let file = dir.join("memory.swap.max");
            let value = match limit {
                _ if s < 0 => "max".to_owned(),
                Some(l) if l > 0 && s >= l => (s - l).to_string(),
                Some(l) if l > 0 => {
                    return Err(self.invalid(format!(
                        "memory+swap limit {s} is below the memory limit {l}"
                    )))
                }
                _ => {
                    return Err(
                        self.invalid(format!("a memory+swap limit ({s}) needs a memory limit"))
                    )
                }
            };
            if file.exists() {
                sys::write(&file, &value)?;
            } else {
                log::warn!(
                    "cgroup {:?}: swap limit requested but this kernel does not account \
                     swap ({} is missing); ignoring it",
                    self.name(),
                    file.display()
                );
            }
        }
        if let Some(r) = mem.reservation() {
            sys::write(&dir.join("memory.low"), &max_or(r))?;
        }
        if mem.swappiness().is_some() {
            log::warn!(
                "cgroup {:?}: memory swappiness has no cgroup v2 equivalent; ignoring it",
                self.name()
            );
        }
        if mem.disable_oom_killer() == Some(true) {
            log::warn!(
                "cgroup {:?}: disabling the OOM killer is not possible on cgroup v2; ignoring it",
                self.name()
            );
        }
        Ok(())
    }

    fn note_unsupported(&self, r: &LinuxResources) {
        let mut ignored = Vec::new();
        if let Some(mem) = r.memory() {
            if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
                ignored.push("memory.kernel/kernelTCP");
            }
        }
        if let Some(cpu) = r.cpu() {
            if cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
                ignored.push("cpu.realtime*");
            }
            if cpu.idle().is_some() {
                ignored.push("cpu.idle");
            }
            if cpu.burst().is_some() {
                ignored.push("cpu.burst");
            }
        }
        if r.block_io().is_some() {
            ignored.push("blockIO");
        }
        if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
            ignored.push("hugepageLimits");
        }
        if r.network().is_some() {
            ignored.push("network");
        }
        if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
            ignored.push("rdma");
        }
        if !ignored.is_empty() {
            log::warn!(
                "cgroup {:?}: ignoring unsupported resources: {}",
                self.name(),
                ignored.join(", ")
            );
        }
    }
}

fn wants_memory(mem: &LinuxMemory) -> bool {
    mem.limit().is_some()
        || mem.swap().is_some_and(|s| s != 0)
        || mem.reservation().is_some()
        || mem.swappiness().is_some()
        || mem.disable_oom_killer().is_some()
}

fn wants_cpuset(cpu: &LinuxCpu) -> bool {
    cpu.cpus().as_ref().is_some_and(|c| !c.is_empty())
        || cpu.mems().as_ref().is_some_and(|m| !m.is_empty())
}

fn positive_or_max(limit: i64) -> i64 {
    if limit > 0 {
        limit
    } else {
        -1
    }
}

fn cpu_v1(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        sys::write(&dir.join("cpu.shares"), &shares.to_string())?;
    }
    let quota = cpu.quota().map(|q| if q > 0 { q } else { -1 }.to_string());
    let quota_file = dir.join("cpu.cfs_quota_us");
    let period_file = dir.join("cpu.cfs_period_us");
    match (cpu.period(), quota) {
        (Some(period), Some(quota)) => {
            match sys::write(&period_file, &period.to_string()) {
                Ok(()) => sys::write(&quota_file, &quota)?,
                // The new period may not fit the old quota; try the other order.
                Err(Error::Write { source, .. })
                    if source.raw_os_error() == Some(Errno::EINVAL as i32) =>
                {
                    sys::write(&quota_file, &quota)?;
                    sys::write(&period_file, &period.to_string())?;
                }
                Err(e) => return Err(e),
            }
        }
        (Some(period), None) => sys::write(&period_file, &period.to_string())?,
        (None, Some(quota)) => sys::write(&quota_file, &quota)?,
        (None, None) => {}
    }
    Ok(())
}

/// The v2 `cpu.max` value for the quota and period the spec sets, if any: a
/// non-positive quota is `max`; a period without a quota keeps the current
/// quota.
fn cpu_max(dir: &Path, quota: Option<i64>, period: Option<u64>) -> Result<Option<String>> {
    let quota = match (quota, period) {
        (None, None) => return Ok(None),
        (Some(q), _) => max_or(if q > 0 { q } else { -1 }),
        (None, Some(_)) => sys::read_opt(&dir.join("cpu.max"))?
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "max".to_owned()),
    };
    Ok(Some(match period {
        Some(p) => format!("{quota} {p}"),
        None => quota,
    }))
}

fn cpuset(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        sys::write(&dir.join("cpuset.cpus"), cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        sys::write(&dir.join("cpuset.mems"), mems)?;
    }
    Ok(())
}

/// Reads a v1 byte count; anything past [`UNLIMITED`] (the kernel prints a
/// page-rounded `i64::MAX`) is `u64::MAX`.
fn read_u64(path: &Path) -> Result<u64> {
    let text = sys::read(path)?;
    let value: u64 = text.trim().parse().map_err(|_| Error::Parse {
        path: path.to_owned(),
        content: text.clone(),
    })?;
    Ok(if value >= UNLIMITED { u64::MAX } else { value })
}
