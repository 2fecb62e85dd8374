//! `linux.resources.devices`: which device nodes a container may read, write
//! or create.
//!
//! Both cgroup versions give the list the same meaning: the rules are
//! considered from the last to the first and, for each kind of access asked
//! for (read, write, mknod), the last rule that matches the device and names
//! that access decides it; an access no rule decides is denied. An access is
//! granted only when every kind it asks for is. A rule of type `a` matches
//! every device and every kind of access, whatever its numbers and access
//! string say, so nothing before it counts.
//!
//! On cgroup v1 the list becomes lines for `devices.deny` and
//! `devices.allow` ([`v1_lines`]); it starts from a clean slate (all denied)
//! unless its first rule is an `a` rule, which resets the cgroup itself. The
//! kernel then follows its own bookkeeping, which agrees with the rules above
//! except in one corner: a rule narrower than an earlier wildcard of the
//! opposite verdict (deny `c 1:3` after allow `c *:*`) does not carve a hole
//! into it on v1.
//!
//! On cgroup v2 the list becomes an eBPF program ([`program`]) evaluated by
//! the kernel on every device access; see [`crate::bpf`].

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use crate::bpf::{Insn, ACC_MKNOD, ACC_READ, ACC_WRITE, DEV_BLOCK, DEV_CHAR};

/// Device nodes every container may use whatever its device rules say, as
/// runc allows them: (type, major, minor), `None` for any minor.
const DEFAULT_DEVICE_RULES: [(LinuxDeviceType, i64, Option<i64>); 9] = [
    (LinuxDeviceType::C, 1, Some(3)),    // null
    (LinuxDeviceType::C, 1, Some(5)),    // zero
    (LinuxDeviceType::C, 1, Some(7)),    // full
    (LinuxDeviceType::C, 1, Some(8)),    // random
    (LinuxDeviceType::C, 1, Some(9)),    // urandom
    (LinuxDeviceType::C, 5, Some(0)),    // tty
    (LinuxDeviceType::C, 5, Some(2)),    // ptmx
    (LinuxDeviceType::C, 136, None),     // the pts slaves
    (LinuxDeviceType::C, 10, Some(200)), // tun
];

/// A container's `resources` with the device rules the container needs to
/// exist: its own device list, then the default devices allowed, and mknod
/// of any node (a node of `linux.devices` still needs the spec's own rule
/// to be opened). Later rules win, so these defaults hold whatever the
/// spec's list says, as with runc.
pub fn with_default_devices(resources: Option<&LinuxResources>) -> LinuxResources {
    let mut resources = resources.cloned().unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true)
            .set_typ(Some(typ))
            .set_major(major)
            .set_minor(minor)
            .set_access(Some(access.to_owned()));
        r
    };
    rules.push(rule(LinuxDeviceType::C, None, None, "m"));
    rules.push(rule(LinuxDeviceType::B, None, None, "m"));
    for (typ, major, minor) in DEFAULT_DEVICE_RULES {
        rules.push(rule(typ, Some(major), minor, "rwm"));
    }
    resources.set_devices(Some(rules));
    resources
}

/// The kind of device a rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Every device (`a`).
    All,
    /// Block devices (`b`).
    Block,
    /// Character devices (`c`).
    Char,
}

/// One validated device rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) allow: bool,
    pub(crate) kind: Kind,
    /// `None` matches any major number.
    pub(crate) major: Option<u32>,
    /// `None` matches any minor number.
    pub(crate) minor: Option<u32>,
    /// The access bits ([`ACC_READ`] and so on), never empty.
    pub(crate) access: u32,
}

/// The largest device number a rule may name: the program compares numbers
/// as sign-extended 32-bit immediates, and real device numbers are far
/// smaller (12-bit majors, 20-bit minors).
const MAX_NUMBER: i64 = i32::MAX as i64;

impl Rule {
    /// Validates an OCI rule: type `a`, `b` or `c` (absent is `a`); a
    /// negative or absent number is a wildcard; access is made of `r`, `w`
    /// and `m` (absent or empty is all three).
    pub(crate) fn from_oci(rule: &LinuxDeviceCgroup) -> Result<Rule, String> {
        let kind = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::C => Kind::Char,
            other => {
                return Err(format!(
                    "device rule {rule}: type {:?} is not one of a, b, c",
                    other.as_str()
                ))
            }
        };
        let number = |n: Option<i64>, what: &str| -> Result<Option<u32>, String> {
            match n {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) if n <= MAX_NUMBER => Ok(u32::try_from(n).ok()),
                Some(n) => Err(format!(
                    "device rule {rule}: {what} number {n} is too large"
                )),
            }
        };
        let major = number(rule.major(), "major")?;
        let minor = number(rule.minor(), "minor")?;
        let mut access = 0;
        for c in rule.access().as_deref().unwrap_or("").chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                other => {
                    return Err(format!(
                        "device rule {rule}: access {other:?} is not one of r, w, m"
                    ))
                }
            };
        }
        if access == 0 {
            access = ACC_READ | ACC_WRITE | ACC_MKNOD;
        }
        Ok(Rule {
            allow: rule.allow(),
            kind,
            major,
            minor,
            access,
        })
    }

    /// The rule as the v1 `devices.allow` / `devices.deny` files take it,
    /// such as `c 1:3 rw` or `a *:* rwm`.
    pub(crate) fn v1_line(&self) -> String {
        let kind = match self.kind {
            Kind::All => return "a *:* rwm".to_owned(),
            Kind::Block => 'b',
            Kind::Char => 'c',
        };
        let number = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        format!(
            "{kind} {}:{} {}",
            number(self.major),
            number(self.minor),
            access_string(self.access)
        )
    }
}

/// `rwm`, in that order, for the bits set.
fn access_string(access: u32) -> String {
    [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| access & bit != 0)
        .map(|&(_, c)| c)
        .collect()
}

/// The v1 writes for `rules`, in order, as (file, line): a deny-all reset
/// first unless the list starts with an `a` rule, then each rule to
/// `devices.allow` or `devices.deny`. An empty list writes nothing.
pub(crate) fn v1_lines(rules: &[Rule]) -> Vec<(&'static str, String)> {
    let mut lines = Vec::with_capacity(rules.len() + 1);
    if rules.first().is_some_and(|r| r.kind != Kind::All) {
        lines.push(("devices.deny", "a *:* rwm".to_owned()));
    }
    for rule in rules {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        lines.push((file, rule.v1_line()));
    }
    lines
}

/// Registers the program uses (`r1` holds the context on entry).
const CTX: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const RET: u8 = 0;

/// Compiles `rules` into a `BPF_PROG_TYPE_CGROUP_DEVICE` program that
/// returns 1 (allow) or 0 (deny) with the semantics of this module.
///
/// Layout: a prologue loads the device type into `r2`, the access asked for
/// into `r3`, the major into `r4` and the minor into `r5`. Then one block
/// per rule, from the last rule to the first: the block is skipped unless
/// type and numbers match; a deny block returns 0 if any access still
/// undecided in `r3` is one it names; an allow block clears the access it
/// names from `r3` and returns 1 once nothing is left. An `a` rule returns
/// its verdict outright and ends the program (earlier rules could never
/// run); otherwise a final `return 0` denies whatever no rule decided.
pub(crate) fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut insns = vec![
        // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
        Insn::ldx_w(TYPE, CTX, 0),
        Insn::mov32_reg(ACCESS, TYPE),
        Insn::rsh32_imm(ACCESS, 16),
        Insn::and32_imm(TYPE, 0xffff),
        Insn::ldx_w(MAJOR, CTX, 4),
        Insn::ldx_w(MINOR, CTX, 8),
    ];
    for rule in rules.iter().rev() {
        if rule.kind == Kind::All {
            insns.push(Insn::mov32_imm(RET, i32::from(rule.allow)));
            insns.push(Insn::exit());
            return insns;
        }
        insns.extend(rule_block(rule));
    }
    insns.push(Insn::mov32_imm(RET, 0));
    insns.push(Insn::exit());
    insns
}

/// The instructions of one `b` or `c` rule; every jump lands on the
/// instruction right after the block.
fn rule_block(rule: &Rule) -> Vec<Insn> {
    let kind = match rule.kind {
        Kind::Block => DEV_BLOCK,
        Kind::Char => DEV_CHAR,
        Kind::All => unreachable!("`a` rules end the program"),
    };
    // Bit patterns fit an i32 immediate: the access bits are 3 bits wide
    // and numbers were checked against MAX_NUMBER.
    let imm = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let mut checks = vec![(TYPE, imm(kind))];
    checks.extend(rule.major.map(|m| (MAJOR, imm(m))));
    checks.extend(rule.minor.map(|m| (MINOR, imm(m))));
    let body = if rule.allow {
        vec![
            Insn::and32_imm(ACCESS, imm(!rule.access & 0x7)),
            Insn::jne_imm(ACCESS, 0, 2),
            Insn::mov32_imm(RET, 1),
            Insn::exit(),
        ]
    } else {
        vec![
            Insn::mov32_reg(RET, ACCESS),
            Insn::and32_imm(RET, imm(rule.access)),
            Insn::jeq_imm(RET, 0, 2),
            Insn::mov32_imm(RET, 0),
            Insn::exit(),
        ]
    };
    let mut block = Vec::with_capacity(checks.len() + body.len());
    for (i, &(reg, value)) in checks.iter().enumerate() {
        let after = checks.len() - i - 1 + body.len();
        block.push(Insn::jne_imm(reg, value, i16::try_from(after).unwrap_or(0)));
    }
    block.extend(body);
    block
}
