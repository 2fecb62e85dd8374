//! Writing an OCI `linux.resources` into a cgroup, on v1 and v2.
//!
//! Only what the spec sets is written, and applying again on a live cgroup
//! is an update: every write is absolute, and where the kernel constrains
//! the order of two files (memory and memory+swap, cfs period, quota and
//! burst, realtime period and runtime) the order is chosen from the current
//! values, or found by trying the other one when the kernel refuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources, LinuxThrottleDevice,
};

use crate::cgroup::Cgroup;
use crate::devices::{self, Rule};
use crate::error::{Error, Result};
use crate::hierarchy::Version;
use crate::sys;

/// The v1 value of an unset (unlimited) memory limit is anything this large.
pub(crate) const UNLIMITED: u64 = i64::MAX as u64 / 2;

/// `ENOTSUPP`, the kernel-internal "not supported" some cgroup files answer.
const ENOTSUPP: i32 = 524;

/// Converts v1 cpu shares (2..=262144) to a v2 cpu weight (1..=10000), the
/// same linear mapping other OCI runtimes use, so a container gets the same
/// share on either version.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Converts a v1 blkio weight (10..=1000; values outside are clamped) to a
/// v2 `io.weight` (1..=10000), the same linear mapping other OCI runtimes
/// use.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
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
    /// Writes the limits `r` sets into the cgroup. Calling it again on a
    /// live cgroup updates the limits.
    ///
    /// | spec                    | cgroup v1                                   | cgroup v2                          |
    /// |-------------------------|---------------------------------------------|------------------------------------|
    /// | memory.limit            | memory.limit_in_bytes                       | memory.max                         |
    /// | memory.reservation      | memory.soft_limit_in_bytes                  | memory.low                         |
    /// | memory.swap             | memory.memsw.limit_in_bytes (memory+swap)   | memory.swap.max (swap − limit)     |
    /// | memory.kernel(TCP)      | memory.kmem(.tcp).limit_in_bytes, if present| ignored (debug log)                |
    /// | memory.swappiness       | memory.swappiness                           | ignored (warning)                  |
    /// | memory.disableOOMKiller | memory.oom_control                          | ignored (warning)                  |
    /// | cpu.shares              | cpu.shares                                  | cpu.weight ([`shares_to_weight`])  |
    /// | cpu.quota, cpu.period   | cpu.cfs_quota_us, cpu.cfs_period_us         | cpu.max                            |
    /// | cpu.burst               | cpu.cfs_burst_us                            | cpu.max.burst                      |
    /// | cpu.realtime*           | cpu.rt_runtime_us, cpu.rt_period_us         | ignored (warning)                  |
    /// | cpu.idle                | cpu.idle                                    | cpu.idle                           |
    /// | cpu.cpus, cpu.mems      | cpuset.cpus, cpuset.mems                    | cpuset.cpus, cpuset.mems           |
    /// | pids.limit              | pids.max                                    | pids.max                           |
    /// | blockIO.weight          | blkio.weight (or blkio.bfq.weight)          | io.bfq.weight, else io.weight ([`blkio_weight_to_io_weight`]) |
    /// | blockIO.leafWeight      | blkio.leaf_weight                           | ignored (warning)                  |
    /// | blockIO.weightDevice    | blkio.(bfq.)weight_device, blkio.leaf_weight_device | io.bfq.weight, else io.weight |
    /// | blockIO.throttle*       | blkio.throttle.{read,write}_{bps,iops}_device | io.max                           |
    /// | hugepageLimits          | hugetlb.SIZE.limit_in_bytes (+ .rsvd.)      | hugetlb.SIZE.max (+ .rsvd.max)     |
    /// | network                 | net_cls.classid, net_prio.ifpriomap         | ignored (warning)                  |
    /// | rdma                    | rdma.max                                    | rdma.max                           |
    /// | devices                 | devices.deny, devices.allow                 | eBPF program  |
    /// | unified                 | error                                       | each key as a file                 |
    ///
    /// Memory limits: `-1` is unlimited; a swap of 0 counts as unset; on v1
    /// the memory limit and memory+swap are written in whichever order keeps
    /// the kernel's rule limit ≤ memory+swap true throughout, and an
    /// unlimited memory limit with no swap given also lifts memory+swap. On
    /// v2 the swap file gets the swap alone (`swap - limit`). With
    /// `checkBeforeUpdate`, a limit below the current usage is refused.
    /// Shares of 0 count as unset; a quota of 0 or less is unlimited, and a
    /// pids limit of 0 or less is `max`. Block IO weights of 0 count as
    /// unset; a throttle rate of 0 removes that throttle (v2 `max`).
    ///
    /// Device rules mean the same on both versions: for each kind of access
    /// asked for (read, write, mknod) the last rule that matches the device
    /// and names that access decides it, and an access no rule decides is
    /// denied; a rule of type `a` matches everything. On v1 the list is
    /// written to `devices.deny`/`devices.allow`, starting with a deny-all
    /// unless it starts with an `a` rule (the v1 kernel does not let a
    /// narrower rule carve a hole into an earlier wildcard of the opposite
    /// verdict). On v2 it is compiled into an eBPF program attached to the
    /// cgroup, which replaces the program attached by an earlier `apply`.
    /// An empty list changes nothing.
    ///
    /// On v2 the io, hugetlb and rdma controllers are enabled in the levels
    /// above the cgroup when a setting needs them. A setting whose v1
    /// controller is not mounted is [`Error::MissingController`]; a
    /// contradictory one is [`Error::InvalidResource`]; a write the kernel
    /// refuses is [`Error::Write`], naming file and value. Settings are
    /// validated before anything is written, except those needing the
    /// kernel's current values.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        let rules = self.device_rules(r)?;
        self.validate(r)?;
        match self.version() {
            Version::V1 => self.apply_v1(r, &rules),
            Version::V2 => self.apply_v2(r, &rules),
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidResource {
            cgroup: self.name().to_owned(),
            reason: reason.into(),
        }
    }

    fn device_rules(&self, r: &LinuxResources) -> Result<Vec<Rule>> {
        r.devices()
            .iter()
            .flatten()
            .map(|d| Rule::from_oci(d).map_err(|reason| self.invalid(reason)))
            .collect()
    }

    /// Checks what can be checked without the kernel.
    fn validate(&self, r: &LinuxResources) -> Result<()> {
        if let Some(unified) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            let mut keys: Vec<&str> = unified.keys().map(String::as_str).collect();
            keys.sort_unstable();
            if self.version() == Version::V1 {
                return Err(self.invalid(format!(
                    "linux.resources.unified needs cgroup v2; cannot write {}",
                    keys.iter()
                        .map(|k| format!("{k:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            for key in keys {
                if !is_file_name(key) {
                    return Err(self.invalid(format!("unified key {key:?} is not a file name")));
                }
            }
        }
        if let Some(mem) = r.memory() {
            if mem.swappiness().is_some_and(|s| s > 100) && self.version() == Version::V1 {
                return Err(self.invalid(format!(
                    "swappiness {} is above 100",
                    mem.swappiness().unwrap_or_default()
                )));
            }
        }
        for limit in r.hugepage_limits().iter().flatten() {
            let size = limit.page_size();
            if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(self.invalid(format!("hugepage size {size:?} is not a size like 2MB")));
            }
        }
        for device in r.rdma().iter().flat_map(|m| m.keys()) {
            if device.is_empty() || device.contains(char::is_whitespace) {
                return Err(self.invalid(format!("rdma device {device:?} is not a device name")));
            }
        }
        Ok(())
    }

    fn apply_v1(&self, r: &LinuxResources, rules: &[Rule]) -> Result<()> {
        if let Some(mem) = r.memory() {
            if wants_memory(mem) {
                self.memory_v1(&self.dir_for("memory")?, mem)?;
            }
        }
        if let Some(cpu) = r.cpu() {
            if wants_cpu(cpu) {
                self.cpu_v1(&self.dir_for("cpu")?, cpu)?;
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
        if let Some(blkio) = r.block_io().as_ref().filter(|b| wants_blkio(b)) {
            blkio_v1(&self.dir_for("blkio")?, blkio)?;
        }
        if let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
            hugetlb(&self.dir_for("hugetlb")?, limits, Version::V1)?;
        }
        if let Some(net) = r.network() {
            if let Some(id) = net.class_id() {
                sys::write(
                    &self.dir_for("net_cls")?.join("net_cls.classid"),
                    &id.to_string(),
                )?;
            }
            if let Some(prios) = net.priorities().as_ref().filter(|p| !p.is_empty()) {
                let file = self.dir_for("net_prio")?.join("net_prio.ifpriomap");
                for p in prios {
                    sys::write(&file, &format!("{} {}", p.name(), p.priority()))?;
                }
            }
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            rdma(&self.dir_for("rdma")?, r)?;
        }
        if !rules.is_empty() {
            let dir = self.dir_for("devices")?;
            for (file, line) in devices::v1_lines(rules) {
                sys::write(&dir.join(file), &line)?;
            }
        }
        Ok(())
    }

    fn memory_v1(&self, dir: &Path, mem: &LinuxMemory) -> Result<()> {
        self.check_before_update(dir.join("memory.usage_in_bytes"), mem)?;
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
                if s < 0 || s.unsigned_abs() >= current {
                    // Raising: memory+swap first makes room for the limit.
                    sys::write(&memsw_file, &s.to_string())?;
                    sys::write(&limit_file, &l.to_string())?;
                } else {
                    // Lowering: the limit first, so memory+swap may follow.
                    sys::write(&limit_file, &l.to_string())?;
                    sys::write(&memsw_file, &s.to_string())?;
                }
            }
            (Some(l), None) => {
                if has_memsw && l >= 0 {
                    let memsw = read_u64(&memsw_file)?;
                    if l.unsigned_abs() > memsw {
                        return Err(self.invalid(format!(
                            "memory limit {l} is above the current memory+swap limit {memsw}; \
                             give linux.resources.memory.swap as well"
                        )));
                    }
                }
                sys::write(&limit_file, &l.to_string())?;
            }
            (None, Some(s)) => sys::write(&memsw_file, &s.to_string())?,
            (None, None) => {}
        }
        if let Some(r) = mem.reservation() {
            sys::write(&dir.join("memory.soft_limit_in_bytes"), &r.to_string())?;
        }
        if let Some(k) = mem.kernel() {
            self.kernel_memory_v1(&dir.join("memory.kmem.limit_in_bytes"), k)?;
        }
        if let Some(k) = mem.kernel_tcp() {
            self.kernel_memory_v1(&dir.join("memory.kmem.tcp.limit_in_bytes"), k)?;
        }
        if let Some(s) = mem.swappiness() {
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

    /// Writes a v1 kernel memory limit where the kernel still has one.
    fn kernel_memory_v1(&self, file: &Path, value: i64) -> Result<()> {
        if !file.exists() {
            log::debug!(
                "cgroup {:?}: {} is missing (recent kernels dropped kernel memory limits); \
                 ignoring {value}",
                self.name(),
                file.display()
            );
            return Ok(());
        }
        match sys::write(file, &value.to_string()) {
            Err(Error::Write { source, .. }) if matches!(source.raw_os_error(), Some(e) if e == Errno::EOPNOTSUPP as i32 || e == ENOTSUPP) =>
            {
                log::debug!(
                    "cgroup {:?}: this kernel no longer supports {}; ignoring {value}",
                    self.name(),
                    file.display()
                );
                Ok(())
            }
            other => other,
        }
    }

    /// With `checkBeforeUpdate`, refuses a memory limit below the usage
    /// `usage_file` reports.
    fn check_before_update(&self, usage_file: PathBuf, mem: &LinuxMemory) -> Result<()> {
        if mem.check_before_update() != Some(true) {
            return Ok(());
        }
        let Some(limit) = mem.limit().filter(|&l| l > 0) else {
            return Ok(());
        };
        let usage = read_u64(&usage_file)?;
        if limit.unsigned_abs() < usage {
            return Err(self.invalid(format!(
                "memory limit {limit} is below the current usage {usage} (checkBeforeUpdate)"
            )));
        }
        Ok(())
    }

    fn cpu_v1(&self, dir: &Path, cpu: &LinuxCpu) -> Result<()> {
        if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
            sys::write(&dir.join("cpu.shares"), &shares.to_string())?;
        }
        let burst_file = dir.join("cpu.cfs_burst_us");
        match (cfs_v1(dir, cpu), cpu.burst()) {
            (Ok(()), Some(burst)) => sys::write(&burst_file, &burst.to_string())?,
            // A lower quota may not fit the old burst: burst first.
            (Err(Error::Write { source, .. }), Some(burst))
                if source.raw_os_error() == Some(Errno::EINVAL as i32) =>
            {
                sys::write(&burst_file, &burst.to_string())?;
                cfs_v1(dir, cpu)?;
            }
            (result, _) => result?,
        }
        let rt_period = cpu.realtime_period().map(|p| p.to_string());
        let rt_runtime = cpu.realtime_runtime().map(|r| r.to_string());
        write_in_either_order(
            (dir.join("cpu.rt_period_us"), rt_period),
            (dir.join("cpu.rt_runtime_us"), rt_runtime),
        )?;
        if let Some(idle) = cpu.idle() {
            sys::write(&dir.join("cpu.idle"), &idle.to_string())?;
        }
        Ok(())
    }

    fn apply_v2(&self, r: &LinuxResources, rules: &[Rule]) -> Result<()> {
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
            if let Some(burst) = cpu.burst() {
                sys::write(&dir.join("cpu.max.burst"), &burst.to_string())?;
            }
            if let Some(idle) = cpu.idle() {
                sys::write(&dir.join("cpu.idle"), &idle.to_string())?;
            }
            if cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
                log::warn!(
                    "cgroup {:?}: realtime cpu limits have no cgroup v2 equivalent; ignoring them",
                    self.name()
                );
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
        if let Some(blkio) = r.block_io().as_ref().filter(|b| wants_blkio(b)) {
            self.enable_v2(&["io"])?;
            self.io_v2(&dir, blkio)?;
        }
        if let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
            self.enable_v2(&["hugetlb"])?;
            hugetlb(&dir, limits, Version::V2)?;
        }
        if let Some(net) = r.network() {
            if net.class_id().is_some() || net.priorities().as_ref().is_some_and(|p| !p.is_empty())
            {
                log::warn!(
                    "cgroup {:?}: network class and priorities have no cgroup v2 equivalent; \
                     ignoring them",
                    self.name()
                );
            }
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            self.enable_v2(&["rdma"])?;
            rdma(&dir, r)?;
        }
        if !rules.is_empty() {
            sys::attach_device_program(&dir, &devices::program(rules))?;
        }
        if let Some(unified) = r.unified() {
            let mut entries: Vec<_> = unified.iter().collect();
            entries.sort();
            for (key, value) in entries {
                sys::write(&dir.join(key), value)?;
            }
        }
        Ok(())
    }

    fn memory_v2(&self, dir: &Path, mem: &LinuxMemory) -> Result<()> {
        self.check_before_update(dir.join("memory.current"), mem)?;
        let limit = mem.limit();
        if let Some(s) = mem.swap().filter(|&s| s != 0) {
            match limit {
                _ if s < 0 => {}
                Some(l) if l > 0 && s >= l => {}
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
            }
        }
        if let Some(l) = limit {
            sys::write(&dir.join("memory.max"), &max_or(l))?;
        }
        if let Some(s) = mem.swap().filter(|&s| s != 0) {
            let file = dir.join("memory.swap.max");
            let value = match limit {
                Some(l) if s >= 0 => (s - l).to_string(),
                _ => "max".to_owned(),
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
        if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
            log::debug!(
                "cgroup {:?}: kernel memory limits have no cgroup v2 equivalent; ignoring them",
                self.name()
            );
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

    fn io_v2(&self, dir: &Path, b: &LinuxBlockIo) -> Result<()> {
        let bfq = dir.join("io.bfq.weight");
        let has_bfq = bfq.exists();
        if let Some(w) = b.weight().filter(|&w| w != 0) {
            if has_bfq {
                sys::write(&bfq, &w.to_string())?;
            } else {
                sys::write(
                    &dir.join("io.weight"),
                    &blkio_weight_to_io_weight(w).to_string(),
                )?;
            }
        }
        let mut leaf_ignored = b.leaf_weight().is_some_and(|w| w != 0);
        for wd in b.weight_device().iter().flatten() {
            if let Some(w) = wd.weight().filter(|&w| w != 0) {
                if has_bfq {
                    sys::write(&bfq, &format!("{}:{} {w}", wd.major(), wd.minor()))?;
                } else {
                    sys::write(
                        &dir.join("io.weight"),
                        &format!(
                            "{}:{} {}",
                            wd.major(),
                            wd.minor(),
                            blkio_weight_to_io_weight(w)
                        ),
                    )?;
                }
            }
            leaf_ignored |= wd.leaf_weight().is_some_and(|w| w != 0);
        }
        if leaf_ignored {
            log::warn!(
                "cgroup {:?}: blkio leaf weights have no cgroup v2 equivalent; ignoring them",
                self.name()
            );
        }
        let mut max: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
        for (key, list) in [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ] {
            for td in list.iter().flatten() {
                let rate = match td.rate() {
                    0 => "max".to_owned(),
                    r => r.to_string(),
                };
                max.entry((td.major(), td.minor()))
                    .or_default()
                    .push(format!("{key}={rate}"));
            }
        }
        for ((major, minor), limits) in max {
            sys::write(
                &dir.join("io.max"),
                &format!("{major}:{minor} {}", limits.join(" ")),
            )?;
        }
        Ok(())
    }
}

fn is_file_name(key: &str) -> bool {
    !key.is_empty() && !key.contains('/') && key != "." && key != ".."
}

fn wants_memory(mem: &LinuxMemory) -> bool {
    mem.limit().is_some()
        || mem.swap().is_some_and(|s| s != 0)
        || mem.reservation().is_some()
        || mem.kernel().is_some()
        || mem.kernel_tcp().is_some()
        || mem.swappiness().is_some()
        || mem.disable_oom_killer().is_some()
}

fn wants_cpu(cpu: &LinuxCpu) -> bool {
    cpu.shares().is_some_and(|s| s != 0)
        || cpu.quota().is_some()
        || cpu.period().is_some()
        || cpu.burst().is_some()
        || cpu.realtime_runtime().is_some()
        || cpu.realtime_period().is_some()
        || cpu.idle().is_some()
}

fn wants_cpuset(cpu: &LinuxCpu) -> bool {
    cpu.cpus().as_ref().is_some_and(|c| !c.is_empty())
        || cpu.mems().as_ref().is_some_and(|m| !m.is_empty())
}

fn wants_blkio(b: &LinuxBlockIo) -> bool {
    let some = |l: &Option<Vec<LinuxThrottleDevice>>| l.as_ref().is_some_and(|l| !l.is_empty());
    b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device().as_ref().is_some_and(|l| !l.is_empty())
        || some(b.throttle_read_bps_device())
        || some(b.throttle_write_bps_device())
        || some(b.throttle_read_iops_device())
        || some(b.throttle_write_iops_device())
}

fn positive_or_max(limit: i64) -> i64 {
    if limit > 0 {
        limit
    } else {
        -1
    }
}

/// Writes the v1 cfs quota and period the spec sets, in whichever order the
/// kernel accepts.
fn cfs_v1(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    let quota = cpu.quota().map(|q| if q > 0 { q } else { -1 }.to_string());
    write_in_either_order(
        (
            dir.join("cpu.cfs_period_us"),
            cpu.period().map(|p| p.to_string()),
        ),
        (dir.join("cpu.cfs_quota_us"), quota),
    )
}

/// Writes `first` then `second` (those given); if the first write fails
/// with `EINVAL` because the new value does not fit the other file's old
/// one, writes them the other way round.
fn write_in_either_order(
    first: (PathBuf, Option<String>),
    second: (PathBuf, Option<String>),
) -> Result<()> {
    match (&first, &second) {
        ((f1, Some(v1)), (f2, Some(v2))) => match sys::write(f1, v1) {
            Ok(()) => sys::write(f2, v2),
            Err(Error::Write { source, .. })
                if source.raw_os_error() == Some(Errno::EINVAL as i32) =>
            {
                sys::write(f2, v2)?;
                sys::write(f1, v1)
            }
            Err(e) => Err(e),
        },
        ((f, Some(v)), (_, None)) | ((_, None), (f, Some(v))) => sys::write(f, v),
        ((_, None), (_, None)) => Ok(()),
    }
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

fn blkio_v1(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // CFQ's files, or BFQ's where only those exist.
    let bfq = !dir.join("blkio.weight").exists() && dir.join("blkio.bfq.weight").exists();
    let (weight_file, weight_device_file) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        sys::write(&dir.join(weight_file), &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        sys::write(&dir.join("blkio.leaf_weight"), &w.to_string())?;
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight().filter(|&w| w != 0) {
            sys::write(
                &dir.join(weight_device_file),
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        }
        if let Some(w) = wd.leaf_weight().filter(|&w| w != 0) {
            sys::write(
                &dir.join("blkio.leaf_weight_device"),
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        }
    }
    for (file, list) in [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ] {
        for td in list.iter().flatten() {
            sys::write(
                &dir.join(file),
                &format!("{}:{} {}", td.major(), td.minor(), td.rate()),
            )?;
        }
    }
    Ok(())
}

/// Writes each huge page limit, and the reservation limit of the same size
/// where the kernel has one.
fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit], version: Version) -> Result<()> {
    for limit in limits {
        let size = limit.page_size();
        let (file, rsvd, value) = match version {
            Version::V1 => (
                format!("hugetlb.{size}.limit_in_bytes"),
                format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                limit.limit().to_string(),
            ),
            Version::V2 => (
                format!("hugetlb.{size}.max"),
                format!("hugetlb.{size}.rsvd.max"),
                max_or(limit.limit()),
            ),
        };
        sys::write(&dir.join(file), &value)?;
        let rsvd = dir.join(rsvd);
        if rsvd.exists() {
            sys::write(&rsvd, &value)?;
        }
    }
    Ok(())
}

/// Writes `rdma.max`, one line per device, sorted by device name.
fn rdma(dir: &Path, r: &LinuxResources) -> Result<()> {
    let mut devices: Vec<_> = r.rdma().iter().flatten().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    for (device, limit) in devices {
        let mut parts = vec![device.clone()];
        parts.extend(limit.hca_handles().map(|n| format!("hca_handle={n}")));
        parts.extend(limit.hca_objects().map(|n| format!("hca_object={n}")));
        if parts.len() > 1 {
            sys::write(&dir.join("rdma.max"), &parts.join(" "))?;
        }
    }
    Ok(())
}

/// Reads a v1 byte count; anything past [`UNLIMITED`] (the kernel prints a
/// page-rounded `i64::MAX`) is `u64::MAX`.
pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let text = sys::read(path)?;
    let value: u64 = text.trim().parse().map_err(|_| Error::Parse {
        path: path.to_owned(),
        content: text.clone(),
    })?;
    Ok(if value >= UNLIMITED { u64::MAX } else { value })
}
