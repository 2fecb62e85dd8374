//! The agent's port when it is a tty: the built-in VMM's single-port
//! virtio console, which the guest sees as `/dev/hvc0`.
//!
//! A tty starts out echoing and editing lines, and host bytes the guest
//! already holds reach the line discipline as soon as the tty is opened,
//! possibly before the agent has made it raw. So on a tty port the agent
//! first makes it raw, then writes [`RAW_READY`]; the host reads that
//! before it sends anything.

/// What the agent writes on a tty port once it is raw, before any frame.
pub const RAW_READY: &[u8] = b"strata-agent: raw\n";
