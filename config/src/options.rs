//! Per-backend class options: the `[classes.<name>.interpose]` and
//! `[classes.<name>.microvm]` tables.
//!
//! Each table is read into a raw shape that mirrors the TOML (unknown keys
//! are rejected by serde) and then checked by [`check_interpose`] and
//! [`check_microvm`], which report every semantic problem with the key and
//! the line it sits on. A table that does not fit the class's backend is
//! refused in `parse.rs`.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// What the interposer of an `interpose` class decides by itself.
///
/// Network rules stay text here: the interposer owns their grammar
/// (`CIDR[:PORT[-PORT]]`) and reports a bad rule with its key when it builds
/// its policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InterposeOptions {
    /// Container paths that look absent (ENOENT), with everything below them.
    pub hidden: Vec<PathBuf>,
    /// Container paths that cannot be written (EROFS), with everything below.
    pub read_only: Vec<PathBuf>,
    /// The kernel release `uname` reports inside the container, if set.
    pub kernel_release: Option<String>,
    /// Syscalls of the interposer's default-denied set that this class allows.
    pub allow_syscalls: Vec<String>,
    /// Which addresses the container may reach or serve on.
    pub network: NetworkOptions,
}

/// The network part of [`InterposeOptions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkOptions {
    /// What happens to an address no rule names.
    pub default: NetDefault,
    /// Rules that allow an address (`CIDR[:PORT[-PORT]]`).
    pub allow: Vec<String>,
    /// Rules that deny an address; a deny rule wins over an allow rule.
    pub deny: Vec<String>,
}

/// The decision for an address that no rule names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetDefault {
    /// Reach anything not denied.
    #[default]
    Allow,
    /// Reach only what is allowed.
    Deny,
}

/// How a `microvm` class runs its virtual machines.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MicrovmOptions {
    /// Which virtual machine monitor runs the guest.
    pub hypervisor: Hypervisor,
    /// Virtual CPUs per VM.
    pub vcpus: u32,
    /// Guest memory in MiB; the container's memory limit caps it.
    pub memory_mib: u32,
    /// The guest kernel the class names; unset, each monitor boots its own
    /// default from [`MICROVM_DATA_DIR`]: [`QEMU_KERNEL`] or [`BUILTIN_KERNEL`].
    pub kernel: Option<PathBuf>,
    /// The initramfs holding the guest agent.
    pub initramfs: PathBuf,
}

/// Where the guest files live unless a class says otherwise.
pub const MICROVM_DATA_DIR: &str = "/var/lib/strata/microvm";
/// The kernel QEMU boots unless the class names one, in
/// [`MICROVM_DATA_DIR`]: Debian's compressed bzImage.
pub const QEMU_KERNEL: &str = "vmlinuz";
/// The kernel the built-in monitor boots unless the class names one, in
/// [`MICROVM_DATA_DIR`]: the same kernel as an uncompressed ELF vmlinux,
/// entered at its 64-bit entry point.
pub const BUILTIN_KERNEL: &str = "vmlinux";

impl Default for MicrovmOptions {
    fn default() -> Self {
        MicrovmOptions {
            hypervisor: Hypervisor::Auto,
            vcpus: 1,
            memory_mib: 256,
            kernel: None,
            initramfs: PathBuf::from(MICROVM_DATA_DIR).join("initramfs.img"),
        }
    }
}

/// The virtual machine monitor of a `microvm` class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// The built-in monitor where the host has hardware virtualization,
    /// QEMU otherwise.
    #[default]
    Auto,
    /// Strata's own monitor on KVM.
    Builtin,
    /// QEMU, on KVM where it can and by emulation where it cannot.
    Qemu,
}

/// Smallest guest memory the agent and a kernel boot in.
pub const MIN_MEMORY_MIB: u32 = 64;
/// Most vCPUs one VM may ask for.
pub const MAX_VCPUS: u32 = 64;

/// `[classes.<name>.interpose]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInterpose {
    #[serde(default)]
    hidden: Vec<Spanned<String>>,
    #[serde(default)]
    read_only: Vec<Spanned<String>>,
    #[serde(default)]
    kernel_release: Option<Spanned<String>>,
    #[serde(default)]
    allow_syscalls: Vec<Spanned<String>>,
    #[serde(default)]
    network: RawNetwork,
}

/// `[classes.<name>.interpose.network]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    #[serde(default)]
    default: NetDefault,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
}

/// `[classes.<name>.microvm]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMicrovm {
    #[serde(default)]
    hypervisor: Hypervisor,
    vcpus: Option<Spanned<u32>>,
    memory_mib: Option<Spanned<u32>>,
    kernel: Option<Spanned<String>>,
    initramfs: Option<Spanned<String>>,
}

/// A semantic problem in an options table: the byte span of the value, the
/// key below the class table (e.g. `interpose.hidden[2]`) and what is wrong.
#[derive(Debug)]
pub(crate) struct OptionProblem {
    pub(crate) span: std::ops::Range<usize>,
    pub(crate) key: String,
    pub(crate) message: String,
}

fn problem(span: std::ops::Range<usize>, key: String, message: impl Into<String>) -> OptionProblem {
    OptionProblem {
        span,
        key,
        message: message.into(),
    }
}

/// Checks a list of container paths: absolute, without `.` or `..` parts.
fn container_paths(list: Vec<Spanned<String>>, key: &str) -> Result<Vec<PathBuf>, OptionProblem> {
    list.into_iter()
        .enumerate()
        .map(|(i, path)| {
            let span = path.span();
            let text = path.into_inner();
            let key = format!("interpose.{key}[{i}]");
            if !text.starts_with('/') {
                return Err(problem(
                    span,
                    key,
                    format!("{text:?} is not an absolute path"),
                ));
            }
            if text.split('/').any(|part| part == "." || part == "..") {
                return Err(problem(
                    span,
                    key,
                    format!("{text:?} has a `.` or `..` component"),
                ));
            }
            Ok(PathBuf::from(text))
        })
        .collect()
}

/// Checks that every entry of a list of words is non-empty, single-line text.
fn words(list: Vec<Spanned<String>>, key: &str) -> Result<Vec<String>, OptionProblem> {
    list.into_iter()
        .enumerate()
        .map(|(i, word)| {
            let span = word.span();
            let text = word.into_inner();
            if text.trim().is_empty() || text.contains(char::is_whitespace) {
                return Err(problem(
                    span,
                    format!("interpose.{key}[{i}]"),
                    format!("{text:?} must be one non-empty word"),
                ));
            }
            Ok(text)
        })
        .collect()
}

/// Turns the raw interpose table into options.
pub(crate) fn check_interpose(raw: RawInterpose) -> Result<InterposeOptions, OptionProblem> {
    let kernel_release = match raw.kernel_release {
        Some(release) => {
            let span = release.span();
            let text = release.into_inner();
            // `struct utsname` holds 64 bytes including the terminating NUL.
            if text.is_empty() || text.len() > 64 || text.contains('\0') {
                return Err(problem(
                    span,
                    "interpose.kernel_release".into(),
                    format!("{text:?} must be 1 to 64 bytes without NUL"),
                ));
            }
            Some(text)
        }
        None => None,
    };
    Ok(InterposeOptions {
        hidden: container_paths(raw.hidden, "hidden")?,
        read_only: container_paths(raw.read_only, "read_only")?,
        kernel_release,
        allow_syscalls: words(raw.allow_syscalls, "allow_syscalls")?,
        network: NetworkOptions {
            default: raw.network.default,
            allow: words(raw.network.allow, "network.allow")?,
            deny: words(raw.network.deny, "network.deny")?,
        },
    })
}

/// Turns the raw microvm table into options, filling in the defaults.
pub(crate) fn check_microvm(raw: RawMicrovm) -> Result<MicrovmOptions, OptionProblem> {
    let defaults = MicrovmOptions::default();
    let vcpus = match raw.vcpus {
        Some(v) if !(1..=MAX_VCPUS).contains(v.get_ref()) => {
            return Err(problem(
                v.span(),
                "microvm.vcpus".into(),
                format!("{} is outside 1..={MAX_VCPUS}", v.get_ref()),
            ))
        }
        Some(v) => v.into_inner(),
        None => defaults.vcpus,
    };
    let memory_mib = match raw.memory_mib {
        Some(m) if *m.get_ref() < MIN_MEMORY_MIB => {
            return Err(problem(
                m.span(),
                "microvm.memory_mib".into(),
                format!("{} is below the minimum of {MIN_MEMORY_MIB}", m.get_ref()),
            ))
        }
        Some(m) => m.into_inner(),
        None => defaults.memory_mib,
    };
    let file = |value: Option<Spanned<String>>, key: &str| match value {
        Some(path) if !path.get_ref().starts_with('/') => Err(problem(
            path.span(),
            format!("microvm.{key}"),
            format!("{:?} is not an absolute path", path.get_ref()),
        )),
        Some(path) => Ok(Some(PathBuf::from(path.into_inner()))),
        None => Ok(None),
    };
    Ok(MicrovmOptions {
        hypervisor: raw.hypervisor,
        vcpus,
        memory_mib,
        kernel: file(raw.kernel, "kernel")?,
        initramfs: file(raw.initramfs, "initramfs")?.unwrap_or(defaults.initramfs),
    })
}
