//! A real moto server (AWS Secrets Manager, SSM Parameter Store and STS) on 127.0.0.1, and the AWS API calls
//! tests use to seed it.
//!
//! `moto_server` keeps everything in memory and serves every region on one port: the region of a request is the
//! one in its signature's credential scope. Seeding calls go straight to moto, signed with a fixed admin key, over
//! the same JSON protocol the SDKs speak; the provider's own calls usually pass through an
//! [`AwsProxy`](crate::AwsProxy) that records them.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;

use crate::process::{self, Probe, ServerProcess, Shutdown, StartError};
use crate::sigv4::{self, Credentials, SignedPost};
use crate::tools;

/// moto answers in about 0.5 s when idle; its first call to a service imports that service, which is slower on a
/// machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);
/// Every seeding call is local and quick; a stuck server must not hang a test forever.
const API_TIMEOUT: Duration = Duration::from_secs(30);
/// The account moto puts into every ARN.
pub const MOTO_ACCOUNT_ID: &str = "123456789012";
/// The key seeding calls are signed with; it never reaches the provider, so calls signed with it are ours.
const ADMIN_ACCESS_KEY_ID: &str = "AKIACOURIERTESTADMIN";
const ADMIN_SECRET_ACCESS_KEY: &str = "courier-test-admin-secret";

/// A Secrets Manager value: `SecretString` or `SecretBinary`.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// Stored as `SecretString`.
    String(String),
    /// Stored as `SecretBinary`.
    Binary(Vec<u8>),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(s) => write!(f, "SecretString(<{} bytes>)", s.len()),
            Self::Binary(b) => write!(f, "SecretBinary(<{} bytes>)", b.len()),
        }
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self::String(value)
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(value: Vec<u8>) -> Self {
        Self::Binary(value)
    }
}

impl From<&[u8]> for SecretValue {
    fn from(value: &[u8]) -> Self {
        Self::Binary(value.to_vec())
    }
}

impl SecretValue {
    fn add_to(&self, body: &mut Value) {
        match self {
            Self::String(s) => body["SecretString"] = json!(s),
            Self::Binary(b) => body["SecretBinary"] = json!(BASE64.encode(b)),
        }
    }
}

/// The type of an SSM parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterType {
    /// `String`.
    String,
    /// `StringList`: comma-separated values, returned as written.
    StringList,
    /// `SecureString`: encrypted with the default key; read back with decryption.
    SecureString,
}

impl ParameterType {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::StringList => "StringList",
            Self::SecureString => "SecureString",
        }
    }
}

/// What `CreateSecret` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSecret {
    /// The full ARN, e.g. `arn:aws:secretsmanager:us-east-1:123456789012:secret:name-AbCdEf`.
    pub arn: String,
    /// The id of the first version (stage `AWSCURRENT`).
    pub version_id: String,
}

/// An AWS error answer: HTTP status, error code (`ResourceNotFoundException`, ...) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsApiError {
    /// The HTTP status.
    pub status: u16,
    /// The error code (`__type` without its namespace).
    pub code: String,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for AwsApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for AwsApiError {}

/// The AWS services moto serves that tests seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsService {
    /// Secrets Manager (`secretsmanager.<Action>`).
    SecretsManager,
    /// SSM (`AmazonSSM.<Action>`).
    Ssm,
}

impl AwsService {
    /// The signing name.
    pub fn signing_name(self) -> &'static str {
        match self {
            Self::SecretsManager => "secretsmanager",
            Self::Ssm => "ssm",
        }
    }

    fn target_prefix(self) -> &'static str {
        match self {
            Self::SecretsManager => "secretsmanager",
            Self::Ssm => "AmazonSSM",
        }
    }
}

/// A running `moto_server`, killed on drop.
#[derive(Debug)]
pub struct Moto {
    // `moto_server` is a Python entry point running Werkzeug in-process, so this pid is the server itself.
    process: ServerProcess,
    port: u16,
    _dir: TempDir,
}

impl Moto {
    /// Starts `moto_server` on a free port, retrying on new ports when the chosen one was taken meanwhile.
    pub async fn start() -> anyhow::Result<Self> {
        process::start_on_fresh_ports("moto", process::PORT_ATTEMPTS, || async {
            Self::try_start(process::free_port()?).await
        })
        .await
    }

    async fn try_start(port: u16) -> Result<Self, StartError> {
        let program = tools::moto_server_program()?;
        let dir = tempfile::Builder::new()
            .prefix("courier-moto-")
            .tempdir()
            .context("cannot create a temporary directory for moto")?;
        let mut command = Command::new(&program);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .env("HOME", dir.path());
        process::clear_inherited_env(&mut command, &[]);
        let process = ServerProcess::spawn(
            "moto",
            &mut command,
            &dir.path().join("moto.log"),
            Shutdown::Kill,
        )?;
        let server = Self {
            process,
            port,
            _dir: dir,
        };
        let at = format!("127.0.0.1:{port}");
        server
            .process
            .wait_ready(&at, READY_TIMEOUT, READY_POLL, || server.probe())
            .await?;
        Ok(server)
    }

    /// A real API call: moto is ready when it answers Secrets Manager, not merely when the port is open.
    async fn probe(&self) -> Probe {
        match self
            .call(
                "us-east-1",
                AwsService::SecretsManager,
                "ListSecrets",
                json!({}),
            )
            .await
        {
            Ok(_) => Probe::Ready,
            Err(error) => Probe::NotYet(format!("{error:#}")),
        }
    }

    /// The endpoint, `http://127.0.0.1:PORT`, as `AWS_ENDPOINT_URL` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// Forgets every resource in every region (`POST /moto-api/reset`). Only for a server no other test shares.
    pub async fn reset(&self) -> anyhow::Result<()> {
        let url = format!("{}/moto-api/reset", self.endpoint());
        let response = http_client()?
            .post(&url)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        if !response.status().is_success() {
            bail!("POST {url} answered {}", response.status());
        }
        Ok(())
    }

    /// Calls `action` of `service` in `region` with a JSON body, signed with the admin key. Returns the JSON
    /// answer; an AWS error answer is an [`AwsApiError`] (downcast the `anyhow::Error` to inspect it).
    pub async fn call(
        &self,
        region: &str,
        service: AwsService,
        action: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let host = format!("127.0.0.1:{}", self.port);
        let body = serde_json::to_vec(&body).context("cannot encode the request")?;
        let target = format!("{}.{action}", service.target_prefix());
        let content_type = "application/x-amz-json-1.1";
        let signed = sigv4::sign_post(
            &Credentials {
                access_key_id: ADMIN_ACCESS_KEY_ID.to_owned(),
                secret_access_key: ADMIN_SECRET_ACCESS_KEY.to_owned(),
            },
            &SignedPost {
                host: &host,
                region,
                service: service.signing_name(),
                headers: &[("content-type", content_type), ("x-amz-target", &target)],
                body: &body,
            },
            OffsetDateTime::now_utc(),
        );
        let url = format!("http://{host}/");
        let mut request = http_client()?
            .post(&url)
            .header("content-type", content_type)
            .header("x-amz-target", &target)
            .body(body);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{target} in {region} at {url}"))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .with_context(|| format!("{target} in {region}: reading the body"))?;
        if !(200..300).contains(&status) {
            return Err(anyhow::Error::new(aws_error(status, &text))
                .context(format!("{target} in {region}")));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{target} in {region}: the answer is not JSON: {text}"))
    }

    /// `CreateSecret`: a new secret `name` in `region` whose first version holds `value`.
    pub async fn create_secret(
        &self,
        region: &str,
        name: &str,
        value: impl Into<SecretValue>,
    ) -> anyhow::Result<CreatedSecret> {
        let mut body = json!({"Name": name});
        value.into().add_to(&mut body);
        let answer = self
            .call(region, AwsService::SecretsManager, "CreateSecret", body)
            .await?;
        Ok(CreatedSecret {
            arn: string_field(&answer, "ARN")?,
            version_id: string_field(&answer, "VersionId")?,
        })
    }

    /// `PutSecretValue`: a new version that becomes `AWSCURRENT` (the old one `AWSPREVIOUS`). Returns its id.
    pub async fn put_secret_value(
        &self,
        region: &str,
        name: &str,
        value: impl Into<SecretValue>,
    ) -> anyhow::Result<String> {
        self.put_secret_value_with_stages(region, name, value, &[])
            .await
    }

    /// `PutSecretValue` with explicit `VersionStages` (empty: the default, `AWSCURRENT`). Returns the version id.
    pub async fn put_secret_value_with_stages(
        &self,
        region: &str,
        name: &str,
        value: impl Into<SecretValue>,
        stages: &[&str],
    ) -> anyhow::Result<String> {
        let mut body = json!({"SecretId": name});
        value.into().add_to(&mut body);
        if !stages.is_empty() {
            body["VersionStages"] = json!(stages);
        }
        let answer = self
            .call(region, AwsService::SecretsManager, "PutSecretValue", body)
            .await?;
        string_field(&answer, "VersionId")
    }

    /// `UpdateSecretVersionStage`: moves the staging label `stage` to `move_to` and/or off `remove_from`.
    pub async fn update_secret_version_stage(
        &self,
        region: &str,
        name: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut body = json!({"SecretId": name, "VersionStage": stage});
        if let Some(version) = move_to {
            body["MoveToVersionId"] = json!(version);
        }
        if let Some(version) = remove_from {
            body["RemoveFromVersionId"] = json!(version);
        }
        self.call(
            region,
            AwsService::SecretsManager,
            "UpdateSecretVersionStage",
            body,
        )
        .await?;
        Ok(())
    }

    /// `DescribeSecret`'s `VersionIdsToStages`: every version id with its staging labels.
    pub async fn secret_version_stages(
        &self,
        region: &str,
        name: &str,
    ) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let answer = self
            .call(
                region,
                AwsService::SecretsManager,
                "DescribeSecret",
                json!({"SecretId": name}),
            )
            .await?;
        let map = answer
            .get("VersionIdsToStages")
            .and_then(Value::as_object)
            .with_context(|| format!("DescribeSecret answered no VersionIdsToStages: {answer}"))?;
        Ok(map
            .iter()
            .map(|(id, stages)| {
                let stages = stages
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                (id.clone(), stages)
            })
            .collect())
    }

    /// `DeleteSecret` without a recovery window: the secret is gone at once.
    pub async fn delete_secret(&self, region: &str, name: &str) -> anyhow::Result<()> {
        self.call(
            region,
            AwsService::SecretsManager,
            "DeleteSecret",
            json!({"SecretId": name, "ForceDeleteWithoutRecovery": true}),
        )
        .await?;
        Ok(())
    }

    /// `PutParameter`. Returns the new version number (1 for a new parameter; `overwrite` bumps it).
    pub async fn put_parameter(
        &self,
        region: &str,
        name: &str,
        value: &str,
        kind: ParameterType,
        overwrite: bool,
    ) -> anyhow::Result<i64> {
        let answer = self
            .call(
                region,
                AwsService::Ssm,
                "PutParameter",
                json!({"Name": name, "Value": value, "Type": kind.as_str(), "Overwrite": overwrite}),
            )
            .await?;
        answer
            .get("Version")
            .and_then(Value::as_i64)
            .with_context(|| format!("PutParameter answered no Version: {answer}"))
    }

    /// `LabelParameterVersion`: attaches `labels` to `version` of `name` (moving them off any other version).
    pub async fn label_parameter_version(
        &self,
        region: &str,
        name: &str,
        version: i64,
        labels: &[&str],
    ) -> anyhow::Result<()> {
        let answer = self
            .call(
                region,
                AwsService::Ssm,
                "LabelParameterVersion",
                json!({"Name": name, "ParameterVersion": version, "Labels": labels}),
            )
            .await?;
        let invalid = answer
            .get("InvalidLabels")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if invalid > 0 {
            bail!("LabelParameterVersion refused labels: {answer}");
        }
        Ok(())
    }

    /// `DeleteParameter`.
    pub async fn delete_parameter(&self, region: &str, name: &str) -> anyhow::Result<()> {
        self.call(
            region,
            AwsService::Ssm,
            "DeleteParameter",
            json!({"Name": name}),
        )
        .await?;
        Ok(())
    }
}

// A fresh client per call: a pooled connection belongs to the tokio runtime that opened it, and a shared server
// outlives the per-test runtimes of `#[tokio::test]`.
fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(API_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
        .context("cannot build an HTTP client")
}

fn string_field(answer: &Value, name: &str) -> anyhow::Result<String> {
    answer
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("the answer has no {name}: {answer}"))
}

/// Reads an AWS JSON-protocol error: `{"__type": "[namespace#]Code", "message": "..."}` (or `Message`).
fn aws_error(status: u16, text: &str) -> AwsApiError {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("__type"))
        .and_then(Value::as_str)
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
        .unwrap_or_else(|| "Unknown".to_owned());
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("Message")))
        .and_then(Value::as_str)
        .map_or_else(|| text.trim().to_owned(), str::to_owned);
    AwsApiError {
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_errors_are_read_from_json_answers() {
        let error = aws_error(
            400,
            r#"{"__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the specified secret."}"#,
        );
        assert_eq!(error.code, "ResourceNotFoundException");
        assert_eq!(error.status, 400);
        let error = aws_error(
            400,
            r#"{"__type":"com.amazon#ParameterNotFound","Message":"x"}"#,
        );
        assert_eq!(
            (error.code.as_str(), error.message.as_str()),
            ("ParameterNotFound", "x")
        );
        let error = aws_error(500, "<html>boom</html>");
        assert_eq!(
            (error.code.as_str(), error.message.as_str()),
            ("Unknown", "<html>boom</html>")
        );
    }
}
