//! A blocking CRI v1 client over containerd's unix socket.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::api;

/// How long one CRI call may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// A blocking CRI v1 client (`runtime.v1.RuntimeService` and
/// `ImageService`) on a unix socket, with its own Tokio runtime.
pub struct CriClient {
    rt: tokio::runtime::Runtime,
    runtime: api::runtime_service_client::RuntimeServiceClient<Channel>,
    images: api::image_service_client::ImageServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the CRI server on `socket`.
    pub fn connect(socket: &Path) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the CRI client's runtime")?;
        let path = socket.to_path_buf();
        let channel = rt
            .block_on(async move {
                Endpoint::try_from("http://[::]:0")?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    }))
                    .await
            })
            .with_context(|| format!("connecting to CRI on {}", socket.display()))?;
        Ok(Self {
            rt,
            runtime: api::runtime_service_client::RuntimeServiceClient::new(channel.clone()),
            images: api::image_service_client::ImageServiceClient::new(channel),
        })
    }

    /// Runs one call with [`RPC_TIMEOUT`]; errors name `what`.
    fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        // The timer must be made inside the runtime.
        match self
            .rt
            .block_on(async { tokio::time::timeout(RPC_TIMEOUT, call).await })
        {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(anyhow!(
                "CRI {what}: {:?}: {}",
                status.code(),
                status.message()
            )),
            Err(_) => Err(anyhow!("CRI {what}: no answer within {RPC_TIMEOUT:?}")),
        }
    }

    /// The runtime's name and version (`Version`).
    pub fn version(&self) -> Result<api::VersionResponse> {
        let mut c = self.runtime.clone();
        self.call("Version", c.version(api::VersionRequest::default()))
    }

    /// Whether the image named `name` is known to CRI (`ImageStatus`).
    pub fn has_image(&self, name: &str) -> Result<bool> {
        let mut c = self.images.clone();
        let request = api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: name.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        };
        Ok(self
            .call(&format!("ImageStatus {name}"), c.image_status(request))?
            .image
            .is_some())
    }

    /// Starts a pod on `handler`; returns its sandbox id (`RunPodSandbox`).
    pub fn run_pod(&self, config: &api::PodSandboxConfig, handler: &str) -> Result<String> {
        let mut c = self.runtime.clone();
        let request = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_owned(),
        };
        Ok(self
            .call(
                &format!("RunPodSandbox on handler {handler}"),
                c.run_pod_sandbox(request),
            )?
            .pod_sandbox_id)
    }

    /// `StopPodSandbox`.
    pub fn stop_pod(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.call(&format!("StopPodSandbox {id}"), c.stop_pod_sandbox(request))
            .map(drop)
    }

    /// `RemovePodSandbox`.
    pub fn remove_pod(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.call(
            &format!("RemovePodSandbox {id}"),
            c.remove_pod_sandbox(request),
        )
        .map(drop)
    }

    /// `PodSandboxStatus`.
    pub fn pod_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let mut c = self.runtime.clone();
        let request = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        };
        self.call(
            &format!("PodSandboxStatus {id}"),
            c.pod_sandbox_status(request),
        )?
        .status
        .ok_or_else(|| anyhow!("CRI PodSandboxStatus {id}: no status"))
    }

    /// Ids of every pod sandbox (`ListPodSandbox`).
    pub fn pods(&self) -> Result<Vec<String>> {
        let mut c = self.runtime.clone();
        let list = self.call(
            "ListPodSandbox",
            c.list_pod_sandbox(api::ListPodSandboxRequest::default()),
        )?;
        Ok(list.items.into_iter().map(|p| p.id).collect())
    }

    /// Creates a container in pod `pod`; returns its id (`CreateContainer`).
    pub fn create_container(
        &self,
        pod: &str,
        config: &api::ContainerConfig,
        pod_config: &api::PodSandboxConfig,
    ) -> Result<String> {
        let mut c = self.runtime.clone();
        let name = config.metadata.as_ref().map_or("", |m| m.name.as_str());
        let request = api::CreateContainerRequest {
            pod_sandbox_id: pod.to_owned(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        };
        Ok(self
            .call(
                &format!("CreateContainer {name} in pod {pod}"),
                c.create_container(request),
            )?
            .container_id)
    }

    /// `StartContainer`.
    pub fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = api::StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.call(&format!("StartContainer {id}"), c.start_container(request))
            .map(drop)
    }

    /// `StopContainer` with a grace period of `timeout` seconds.
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = api::StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        };
        self.call(&format!("StopContainer {id}"), c.stop_container(request))
            .map(drop)
    }

    /// `RemoveContainer`.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = api::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.call(
            &format!("RemoveContainer {id}"),
            c.remove_container(request),
        )
        .map(drop)
    }

    /// `ContainerStatus`.
    pub fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let mut c = self.runtime.clone();
        let request = api::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        self.call(
            &format!("ContainerStatus {id}"),
            c.container_status(request),
        )?
        .status
        .ok_or_else(|| anyhow!("CRI ContainerStatus {id}: no status"))
    }

    /// Ids of every container (`ListContainers`).
    pub fn containers(&self) -> Result<Vec<String>> {
        let mut c = self.runtime.clone();
        let list = self.call(
            "ListContainers",
            c.list_containers(api::ListContainersRequest::default()),
        )?;
        Ok(list.containers.into_iter().map(|c| c.id).collect())
    }

    /// Runs `cmd` in container `id` and returns its output and exit code
    /// (`ExecSync`, at most `timeout` seconds).
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout: i64) -> Result<api::ExecSyncResponse> {
        let mut c = self.runtime.clone();
        let request = api::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout,
        };
        self.call(&format!("ExecSync {cmd:?} in {id}"), c.exec_sync(request))
    }

    /// `ContainerStats`.
    pub fn container_stats(&self, id: &str) -> Result<api::ContainerStats> {
        let mut c = self.runtime.clone();
        let request = api::ContainerStatsRequest {
            container_id: id.to_owned(),
        };
        self.call(&format!("ContainerStats {id}"), c.container_stats(request))?
            .stats
            .ok_or_else(|| anyhow!("CRI ContainerStats {id}: no stats"))
    }
}
