//! containerd's task API (v2) over ttrpc, translated to [`Tasks`] calls.
//!
//! This module only converts between protobuf messages and plain values;
//! every decision is made in [`crate::tasks`].

use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::protos::shim::shim::{CheckpointTaskRequest, PauseRequest, ResumeRequest};
use containerd_shim::protos::types::task::{ProcessInfo, Status as ProtoStatus};
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};
use futures::FutureExt;
use strata_backend::Stdio;
use strata_config::RuntimeOptions;

use crate::error::TaskError;
use crate::events::timestamp;
use crate::rootfs::RootfsMount;
use crate::tasks::{CreateTask, Status, Tasks};

/// The ttrpc task service.
pub struct TaskService {
    tasks: Arc<Tasks>,
    exit: Arc<ExitSignal>,
}

impl TaskService {
    /// Serves `tasks`; `exit` is signalled when containerd shuts the shim down.
    pub fn new(tasks: Arc<Tasks>, exit: Arc<ExitSignal>) -> Self {
        TaskService { tasks, exit }
    }
}

/// containerd sends an empty exec id for the init process.
fn exec_id(id: &str) -> Option<&str> {
    (!id.is_empty()).then_some(id)
}

fn unimplemented<T>(rpc: &'static str) -> TtrpcResult<T> {
    Err(TaskError::Unimplemented(rpc).into())
}

/// Runs one request, turning a panic in it into an error for that request
/// alone, so that a bug cannot take the whole shim (and its containers' exit
/// reporting) down.
async fn guarded<T>(
    rpc: &'static str,
    request: impl std::future::Future<Output = TtrpcResult<T>>,
) -> TtrpcResult<T> {
    match AssertUnwindSafe(request).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log::error!("{rpc} panicked: {what}");
            Err(TaskError::Internal(format!("{rpc} failed: internal error: {what}")).into())
        }
    }
}

/// The translation of each request; [`Task`] wraps them in [`guarded`].
impl TaskService {
    async fn create(&self, req: CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        if !req.checkpoint.is_empty() {
            return unimplemented("restoring from a checkpoint");
        }
        let options = match req.options.as_ref() {
            Some(any) => RuntimeOptions::from_any(&any.type_url, &any.value)
                .map_err(|e| TaskError::InvalidArgument(format!("runtime options: {e}")))?,
            None => None,
        };
        let pid = self
            .tasks
            .create(CreateTask {
                id: req.id.clone(),
                bundle: req.bundle.clone().into(),
                rootfs: req.rootfs.iter().map(RootfsMount::from).collect(),
                stdio: Stdio::from_paths(&req.stdin, &req.stdout, &req.stderr, req.terminal),
                options,
            })
            .await?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, req: StartRequest) -> TtrpcResult<StartResponse> {
        let pid = self.tasks.start(&req.id, exec_id(&req.exec_id)).await?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, req: StateRequest) -> TtrpcResult<StateResponse> {
        let (bundle, state) = self.tasks.state(&req.id, exec_id(&req.exec_id))?;
        let path = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let status = match state.status {
            Status::Created => ProtoStatus::CREATED,
            Status::Running => ProtoStatus::RUNNING,
            Status::Paused => ProtoStatus::PAUSED,
            Status::Stopped => ProtoStatus::STOPPED,
        };
        Ok(StateResponse {
            id: req.id,
            exec_id: req.exec_id,
            bundle: bundle.display().to_string(),
            pid: state.pid,
            status: status.into(),
            stdin: path(&state.stdio.stdin),
            stdout: path(&state.stdio.stdout),
            stderr: path(&state.stdio.stderr),
            terminal: state.stdio.terminal,
            exit_status: state.exit.map_or(0, |e| e.code),
            exited_at: state.exit.map(timestamp).into(),
            ..Default::default()
        })
    }

    async fn wait(&self, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let exit = self.tasks.wait(&req.id, exec_id(&req.exec_id)).await?;
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: Some(timestamp(exit)).into(),
            ..Default::default()
        })
    }

    async fn kill(&self, req: KillRequest) -> TtrpcResult<Empty> {
        self.tasks
            .kill(&req.id, exec_id(&req.exec_id), req.signal, req.all)
            .await?;
        Ok(Empty::new())
    }

    async fn delete(&self, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let (pid, exit) = self.tasks.delete(&req.id, exec_id(&req.exec_id)).await?;
        Ok(DeleteResponse {
            pid,
            exit_status: exit.code,
            exited_at: Some(timestamp(exit)).into(),
            ..Default::default()
        })
    }

    async fn pids(&self, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let processes = self
            .tasks
            .pids(&req.id)
            .await?
            .into_iter()
            .map(|pid| ProcessInfo {
                pid,
                ..Default::default()
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn exec(&self, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let spec = req.spec.as_ref().ok_or_else(|| {
            TaskError::InvalidArgument(format!("exec {}: no process spec", req.exec_id))
        })?;
        let process: oci_spec::runtime::Process =
            serde_json::from_slice(&spec.value).map_err(|e| {
                TaskError::InvalidArgument(format!("exec {}: process spec: {e}", req.exec_id))
            })?;
        let stdio = Stdio::from_paths(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        self.tasks.exec(&req.id, &req.exec_id, process, stdio)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, req: CloseIORequest) -> TtrpcResult<Empty> {
        if req.stdin {
            self.tasks
                .close_stdin(&req.id, exec_id(&req.exec_id))
                .await?;
        }
        Ok(Empty::new())
    }

    async fn connect(&self, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: self.tasks.init_pid(&req.id).unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        if self.tasks.is_empty() {
            self.exit.signal();
        }
        Ok(Empty::new())
    }

    async fn pause(&self, req: PauseRequest) -> TtrpcResult<Empty> {
        self.tasks.pause(&req.id).await?;
        Ok(Empty::new())
    }

    async fn resume(&self, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.tasks.resume(&req.id).await?;
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        unimplemented("Checkpoint")
    }

    async fn resize_pty(&self, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        self.tasks
            .resize_pty(&req.id, exec_id(&req.exec_id), req.width, req.height)
            .await?;
        Ok(Empty::new())
    }

    async fn update(&self, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let any = req
            .resources
            .as_ref()
            .ok_or_else(|| TaskError::InvalidArgument("update: no resources".into()))?;
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&any.value)
            .map_err(|e| TaskError::InvalidArgument(format!("update: linux.resources: {e}")))?;
        self.tasks.update(&req.id, resources).await?;
        Ok(Empty::new())
    }

    async fn stats(&self, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let metrics = self.tasks.stats(&req.id).await?;
        Ok(StatsResponse {
            stats: Some(crate::metrics::to_any(&metrics)?).into(),
            ..Default::default()
        })
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        guarded("Create", self.create(req)).await
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        guarded("Start", self.start(req)).await
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        guarded("State", self.state(req)).await
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        guarded("Wait", self.wait(req)).await
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        guarded("Kill", self.kill(req)).await
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        guarded("Delete", self.delete(req)).await
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        guarded("Pids", self.pids(req)).await
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        guarded("Exec", self.exec(req)).await
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        guarded("CloseIO", self.close_io(req)).await
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        guarded("Connect", self.connect(req)).await
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        guarded("Shutdown", self.shutdown(req)).await
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        guarded("Pause", self.pause(req)).await
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        guarded("Resume", self.resume(req)).await
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        guarded("Checkpoint", self.checkpoint(req)).await
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        guarded("ResizePty", self.resize_pty(req)).await
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        guarded("Update", self.update(req)).await
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        guarded("Stats", self.stats(req)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_request_becomes_an_error_for_that_request() {
        let result: TtrpcResult<()> = guarded("State", async { panic!("boom") }).await;
        let text = format!("{:?}", result.unwrap_err());
        assert!(
            text.contains("State failed") && text.contains("boom"),
            "{text}"
        );
        let fine: TtrpcResult<u32> = guarded("State", async { Ok(7) }).await;
        assert_eq!(fine.unwrap(), 7);
    }
}
