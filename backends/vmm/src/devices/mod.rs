//! Device models: the legacy serial console and the virtio devices behind
//! their virtio-mmio transport.

pub mod serial;
pub mod virtio;
