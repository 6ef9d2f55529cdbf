//! Calls a provider the way Secrets Store CSI drivers before v1.6 did: with the socket path as `:authority`.
//!
//! A server built on hyper/h2 rejects such a request unless it takes care, so this is a client tonic cannot
//! play: it is `tests/support/legacy_driver_client.py` on grpc-core (the venv's `grpcio`), wrapped here.
//! [`crate::h2_capture`] checks what the script really puts on the wire.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use courier_proto::v1alpha1::{
    Error as MountError, File, MountRequest, MountResponse, ObjectVersion, VersionResponse,
};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::tools;

/// The script generates stubs with protoc before calling, which takes a few hundred milliseconds.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The deadline the script puts on the call itself.
const CALL_DEADLINE_SECS: u32 = 30;

/// Which `:authority` the legacy client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The absolute socket path, exactly what drivers up to v1.5 (grpc-go) sent.
    SocketPath,
    /// Whatever grpc-core derives for `unix://<path>` on its own (the percent-encoded path).
    GrpcDefault,
}

impl Authority {
    fn flag(self) -> &'static str {
        match self {
            Self::SocketPath => "socket-path",
            Self::GrpcDefault => "grpc-default",
        }
    }
}

/// What a call returned: a response, or a gRPC status.
#[derive(Debug, Clone, PartialEq)]
pub enum LegacyOutcome<T> {
    /// The call succeeded.
    Response(T),
    /// The call failed with this status.
    Status {
        /// The gRPC code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
}

impl<T> LegacyOutcome<T> {
    /// The response, or an error describing the status.
    pub fn into_response(self) -> anyhow::Result<T> {
        match self {
            Self::Response(response) => Ok(response),
            Self::Status { code, message } => bail!("legacy client got {code:?}: {message}"),
        }
    }
}

/// `Mount` with the socket path as `:authority`.
pub async fn legacy_mount(
    socket: &Path,
    request: &MountRequest,
) -> anyhow::Result<LegacyOutcome<MountResponse>> {
    legacy_mount_with(socket, request, Authority::SocketPath).await
}

/// `Mount` with the chosen authority.
pub async fn legacy_mount_with(
    socket: &Path,
    request: &MountRequest,
    authority: Authority,
) -> anyhow::Result<LegacyOutcome<MountResponse>> {
    let input = json!({
        "attributes": request.attributes,
        "secrets": request.secrets,
        "target_path": request.target_path,
        "permission": request.permission,
        "current_object_version": request
            .current_object_version
            .iter()
            .map(|v| json!({"id": v.id, "version": v.version}))
            .collect::<Vec<_>>(),
    });
    let outcome: Outcome<WireMountResponse> =
        run_script(socket, "mount", authority, &input).await?;
    Ok(match outcome.into_legacy()? {
        LegacyOutcome::Response(wire) => LegacyOutcome::Response(wire.into_proto()?),
        LegacyOutcome::Status { code, message } => LegacyOutcome::Status { code, message },
    })
}

/// `Version` with the chosen authority.
pub async fn legacy_version(
    socket: &Path,
    authority: Authority,
) -> anyhow::Result<LegacyOutcome<VersionResponse>> {
    let input = json!({"version": crate::provider::API_VERSION});
    let outcome: Outcome<WireVersionResponse> =
        run_script(socket, "version", authority, &input).await?;
    outcome.into_legacy().map(|legacy| match legacy {
        LegacyOutcome::Response(v) => LegacyOutcome::Response(VersionResponse {
            version: v.version,
            runtime_name: v.runtime_name,
            runtime_version: v.runtime_version,
        }),
        LegacyOutcome::Status { code, message } => LegacyOutcome::Status { code, message },
    })
}

/// The script committed beside the tests.
pub fn script_path() -> PathBuf {
    tools::workspace_root().join("tests/support/legacy_driver_client.py")
}

/// Starts the script for one call, without waiting; for wire checks against a listener that never answers.
pub fn spawn_version_call(
    socket: &Path,
    authority: Authority,
) -> anyhow::Result<tokio::process::Child> {
    let mut command = script_command(socket, "version", authority)?;
    command.arg("--timeout").arg("5").stdin(Stdio::null());
    command
        .spawn()
        .context("cannot start the legacy driver client")
}

fn script_command(socket: &Path, rpc: &str, authority: Authority) -> anyhow::Result<Command> {
    let socket = std::path::absolute(socket)
        .with_context(|| format!("cannot make {} absolute", socket.display()))?;
    let mut command = Command::new(tools::python_program()?);
    command
        .arg(script_path())
        .arg("--socket")
        .arg(socket)
        .arg("--proto-dir")
        .arg(tools::workspace_root().join("proto/proto"))
        .arg("--rpc")
        .arg(rpc)
        .arg("--authority")
        .arg(authority.flag())
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("grpc_proxy")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(command)
}

async fn run_script<T: for<'de> Deserialize<'de>>(
    socket: &Path,
    rpc: &str,
    authority: Authority,
    input: &serde_json::Value,
) -> anyhow::Result<Outcome<T>> {
    let mut command = script_command(socket, rpc, authority)?;
    command
        .arg("--timeout")
        .arg(CALL_DEADLINE_SECS.to_string())
        .stdin(Stdio::piped());
    let mut child = command
        .spawn()
        .context("cannot start the legacy driver client")?;
    let mut stdin = child
        .stdin
        .take()
        .context("the legacy client has no stdin")?;
    stdin
        .write_all(input.to_string().as_bytes())
        .await
        .context("cannot write the request")?;
    drop(stdin);
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .context("the legacy driver client did not finish in time")?
        .context("cannot wait for the legacy driver client")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the legacy driver client failed with {}: {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_str(&stdout)
        .with_context(|| format!("the legacy driver client printed no outcome: {stdout}"))
}

#[derive(Deserialize)]
struct Outcome<T> {
    ok: bool,
    response: Option<T>,
    code: Option<i32>,
    details: Option<String>,
}

impl<T> Outcome<T> {
    fn into_legacy(self) -> anyhow::Result<LegacyOutcome<T>> {
        if self.ok {
            return self
                .response
                .map(LegacyOutcome::Response)
                .context("outcome ok without a response");
        }
        let code = self.code.context("outcome not ok without a code")?;
        Ok(LegacyOutcome::Status {
            code: tonic::Code::from_i32(code),
            message: self.details.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
struct WireMountResponse {
    object_version: Vec<WireObjectVersion>,
    error: Option<WireError>,
    files: Vec<WireFile>,
}

#[derive(Deserialize)]
struct WireObjectVersion {
    id: String,
    version: String,
}

#[derive(Deserialize)]
struct WireError {
    code: String,
}

#[derive(Deserialize)]
struct WireFile {
    path: String,
    mode: i32,
    contents: String,
}

#[derive(Deserialize)]
struct WireVersionResponse {
    version: String,
    runtime_name: String,
    runtime_version: String,
}

impl WireMountResponse {
    fn into_proto(self) -> anyhow::Result<MountResponse> {
        let files = self
            .files
            .into_iter()
            .map(|f| {
                let contents = STANDARD
                    .decode(&f.contents)
                    .with_context(|| format!("file {} contents are not base64", f.path))?;
                Ok(File {
                    path: f.path,
                    mode: f.mode,
                    contents,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(MountResponse {
            object_version: self
                .object_version
                .into_iter()
                .map(|v| ObjectVersion {
                    id: v.id,
                    version: v.version,
                })
                .collect(),
            error: self.error.map(|e| MountError { code: e.code }),
            files,
        })
    }
}
