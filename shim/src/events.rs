//! The one path by which the shim's events reach containerd.
//!
//! Request handlers and exit watchers only enqueue; a single forwarder task
//! publishes in order, so containerd sees, for example, an exec's exit before
//! its container's init exit when that is the order they were sent in.

use async_trait::async_trait;
use containerd_shim::protos::api::Mount;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use strata_backend::{Exit, Stdio};
use tokio::sync::mpsc;

use crate::rootfs::RootfsMount;

/// Something an event can be delivered to.
#[async_trait]
pub trait Forwarder: Send + Sync + 'static {
    /// Delivers one event; failures are the forwarder's to report.
    async fn forward(&self, topic: &'static str, event: Box<dyn MessageDyn>);
}

/// Publishes to containerd over its ttrpc events service.
pub struct ContainerdForwarder {
    publisher: RemotePublisher,
    namespace: String,
}

impl ContainerdForwarder {
    /// Publishes through `publisher` in containerd namespace `namespace`.
    pub fn new(publisher: RemotePublisher, namespace: String) -> Self {
        ContainerdForwarder {
            publisher,
            namespace,
        }
    }
}

#[async_trait]
impl Forwarder for ContainerdForwarder {
    async fn forward(&self, topic: &'static str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            log::error!("publishing {topic}: {e}");
        }
    }
}

/// An event the task service reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A container was created; its init has this pid.
    Create {
        /// The container id.
        id: String,
        /// The bundle directory.
        bundle: String,
        /// What was mounted as its rootfs.
        rootfs: Vec<RootfsMount>,
        /// The init process's stdio.
        stdio: Stdio,
        /// The init process's pid.
        pid: u32,
    },
    /// A container's init was started.
    Start {
        /// The container id.
        id: String,
        /// The init process's pid.
        pid: u32,
    },
    /// A process exited.
    Exit {
        /// The container id.
        id: String,
        /// The exec id, or the container id for the init process.
        process_id: String,
        /// The process's pid.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// A container was deleted.
    Delete {
        /// The container id.
        id: String,
        /// The init process's pid.
        pid: u32,
        /// How the init process ended.
        exit: Exit,
    },
    /// An exec process was added.
    ExecAdded {
        /// The container id.
        id: String,
        /// The exec id.
        exec_id: String,
    },
    /// An exec process was started.
    ExecStarted {
        /// The container id.
        id: String,
        /// The exec id.
        exec_id: String,
        /// Its pid.
        pid: u32,
    },
    /// A container was paused.
    Paused {
        /// The container id.
        id: String,
    },
    /// A paused container was resumed.
    Resumed {
        /// The container id.
        id: String,
    },
    /// Processes of a container were killed for lack of memory.
    Oom {
        /// The container id.
        id: String,
    },
}

impl Event {
    /// The topic and protobuf message containerd expects for this event.
    fn into_message(self) -> (&'static str, Box<dyn MessageDyn>) {
        match self {
            Event::Create {
                id,
                bundle,
                rootfs,
                stdio,
                pid,
            } => {
                let path = |p: &Option<std::path::PathBuf>| {
                    p.as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                };
                let io = TaskIO {
                    stdin: path(&stdio.stdin),
                    stdout: path(&stdio.stdout),
                    stderr: path(&stdio.stderr),
                    terminal: stdio.terminal,
                    ..Default::default()
                };
                let rootfs = rootfs
                    .into_iter()
                    .map(|m| Mount {
                        type_: m.fs_type,
                        source: m.source,
                        options: m.options,
                        ..Default::default()
                    })
                    .collect();
                (
                    topics::TASK_CREATE_EVENT_TOPIC,
                    Box::new(TaskCreate {
                        container_id: id,
                        bundle,
                        rootfs,
                        io: Some(io).into(),
                        pid,
                        ..Default::default()
                    }),
                )
            }
            Event::Start { id, pid } => (
                topics::TASK_START_EVENT_TOPIC,
                Box::new(TaskStart {
                    container_id: id,
                    pid,
                    ..Default::default()
                }),
            ),
            Event::Exit {
                id,
                process_id,
                pid,
                exit,
            } => (
                topics::TASK_EXIT_EVENT_TOPIC,
                Box::new(TaskExit {
                    container_id: id,
                    id: process_id,
                    pid,
                    exit_status: exit.code,
                    exited_at: Some(timestamp(exit)).into(),
                    ..Default::default()
                }),
            ),
            Event::Delete { id, pid, exit } => (
                topics::TASK_DELETE_EVENT_TOPIC,
                Box::new(TaskDelete {
                    container_id: id,
                    pid,
                    exit_status: exit.code,
                    exited_at: Some(timestamp(exit)).into(),
                    ..Default::default()
                }),
            ),
            Event::ExecAdded { id, exec_id } => (
                topics::TASK_EXEC_ADDED_EVENT_TOPIC,
                Box::new(TaskExecAdded {
                    container_id: id,
                    exec_id,
                    ..Default::default()
                }),
            ),
            Event::ExecStarted { id, exec_id, pid } => (
                topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                Box::new(TaskExecStarted {
                    container_id: id,
                    exec_id,
                    pid,
                    ..Default::default()
                }),
            ),
            Event::Paused { id } => (
                topics::TASK_PAUSED_EVENT_TOPIC,
                Box::new(TaskPaused {
                    container_id: id,
                    ..Default::default()
                }),
            ),
            Event::Resumed { id } => (
                topics::TASK_RESUMED_EVENT_TOPIC,
                Box::new(TaskResumed {
                    container_id: id,
                    ..Default::default()
                }),
            ),
            Event::Oom { id } => (
                topics::TASK_OOM_EVENT_TOPIC,
                Box::new(TaskOOM {
                    container_id: id,
                    ..Default::default()
                }),
            ),
        }
    }
}

/// Converts an exit time into containerd's timestamp.
pub fn timestamp(exit: Exit) -> Timestamp {
    let since_epoch = exit
        .at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// The sending side of the event path; cheap to clone.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<Event>,
}

impl EventSender {
    /// Starts the forwarder task and returns the sender that feeds it.
    pub fn start(forwarder: impl Forwarder) -> EventSender {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let (topic, message) = event.into_message();
                forwarder.forward(topic, message).await;
            }
        });
        EventSender { tx }
    }

    /// Queues an event; never blocks.
    pub fn send(&self, event: Event) {
        if self.tx.send(event).is_err() {
            log::error!("the event forwarder has stopped");
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A forwarder that records topics, for tests of the task logic.

    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records every topic it is given.
    #[derive(Clone, Default)]
    pub struct Recorder(pub Arc<Mutex<Vec<&'static str>>>);

    #[async_trait]
    impl Forwarder for Recorder {
        async fn forward(&self, topic: &'static str, _event: Box<dyn MessageDyn>) {
            self.0.lock().unwrap().push(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Recorder;
    use super::*;

    #[tokio::test]
    async fn events_are_published_in_the_order_they_were_sent() {
        let recorder = Recorder::default();
        let sender = EventSender::start(recorder.clone());
        sender.send(Event::ExecAdded {
            id: "c".into(),
            exec_id: "e".into(),
        });
        sender.send(Event::Exit {
            id: "c".into(),
            process_id: "e".into(),
            pid: 2,
            exit: Exit::now(0),
        });
        sender.send(Event::Exit {
            id: "c".into(),
            process_id: "c".into(),
            pid: 1,
            exit: Exit::now(0),
        });
        for _ in 0..100 {
            if recorder.0.lock().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![
                topics::TASK_EXEC_ADDED_EVENT_TOPIC,
                topics::TASK_EXIT_EVENT_TOPIC,
                topics::TASK_EXIT_EVENT_TOPIC
            ]
        );
    }
}
