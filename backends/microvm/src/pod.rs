//! A pod's VM, shared by the pod's containers. The shim serves all of a
//! pod's containers in one process but builds a backend for each Create,
//! so the pods live in a process-wide registry keyed by sandbox id, where
//! an app container finds its sandbox's VM; each app container's root
//! filesystem goes on one of the VM's spare disks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use strata_backend::{Error, Result};

use crate::client::AgentClient;
use crate::vm::{spare, Vm, SPARES, SPARE_SIZE};

/// A running pod VM.
pub struct Pod {
    /// The VM.
    pub vm: Arc<Vm>,
    /// The connection to its agent.
    pub client: Arc<AgentClient>,
    /// The sandbox's state directory, which holds the spare disks' images.
    state_dir: PathBuf,
    /// Which spare disks an app container uses, by slot.
    slots: Mutex<[Option<String>; SPARES]>,
}

fn pods() -> MutexGuard<'static, HashMap<String, Arc<Pod>>> {
    static PODS: OnceLock<Mutex<HashMap<String, Arc<Pod>>>> = OnceLock::new();
    PODS.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Makes the VM of sandbox `sandbox` findable by its app containers.
pub fn register(sandbox: &str, pod: Pod) {
    pods().insert(sandbox.to_owned(), Arc::new(pod));
}

/// The VM of sandbox `sandbox`, if this process runs it.
pub fn find(sandbox: &str) -> Option<Arc<Pod>> {
    pods().get(sandbox).cloned()
}

/// Forgets the VM of sandbox `sandbox`; app containers can no longer join it.
pub fn forget(sandbox: &str) {
    pods().remove(sandbox);
}

impl Pod {
    /// A pod VM whose spare disks' images are in `state_dir`.
    pub fn new(vm: Arc<Vm>, client: Arc<AgentClient>, state_dir: PathBuf) -> Pod {
        Pod {
            vm,
            client,
            state_dir,
            slots: Mutex::default(),
        }
    }

    fn slots(&self) -> MutexGuard<'_, [Option<String>; SPARES]> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a free spare disk for `container`.
    pub fn take_slot(&self, container: &str) -> Result<usize> {
        let mut slots = self.slots();
        let Some(slot) = slots.iter().position(Option::is_none) else {
            return Err(Error::Process(format!(
                "container {container}: all {SPARES} spare disks of the pod's VM are in use \
                 (a pod VM runs at most {SPARES} app containers at once)"
            )));
        };
        slots[slot] = Some(container.to_owned());
        Ok(slot)
    }

    /// The image file of spare disk `slot`.
    pub fn image(&self, slot: usize) -> PathBuf {
        self.state_dir.join(format!("{}.img", spare(slot)))
    }

    /// Empties the image of `slot` (its blocks go back to the host) and
    /// makes the slot free again; the guest no longer uses the disk.
    pub fn release(&self, slot: usize) {
        let image = self.image(slot);
        let emptied = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .and_then(|f| f.set_len(0).and_then(|()| f.set_len(SPARE_SIZE)));
        match emptied {
            Ok(()) => {}
            // The VM is gone, its files with it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("emptying the spare disk {}: {e}", image.display()),
        }
        self.slots()[slot] = None;
    }
}
