//! Driver-side calls with deadlines, and the checks tests make on their results.
//!
//! The checks panic with the whole response or status in the message: they are assertions, meant to be called
//! from test bodies.

use std::fmt::Debug;
use std::time::Duration;

use courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use courier_proto::v1alpha1::{File, MountRequest, MountResponse, VersionRequest, VersionResponse};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::provider::API_VERSION;

/// The deadline the driver's context puts on a call; kubelet allows about two minutes for a mount.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `Mount` with a deadline, as the driver calls it.
pub async fn mount(
    client: &mut CsiDriverProviderClient<Channel>,
    request: MountRequest,
) -> Result<MountResponse, Status> {
    let mut request = tonic::Request::new(request);
    request.set_timeout(CALL_TIMEOUT);
    match tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(5), client.mount(request)).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(
            "the test's own deadline for Mount passed",
        )),
    }
}

/// `Version` with a deadline.
pub async fn version(
    client: &mut CsiDriverProviderClient<Channel>,
) -> Result<VersionResponse, Status> {
    let mut request = tonic::Request::new(VersionRequest {
        version: API_VERSION.to_owned(),
    });
    request.set_timeout(CALL_TIMEOUT);
    match tokio::time::timeout(
        CALL_TIMEOUT + Duration::from_secs(5),
        client.version(request),
    )
    .await
    {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(
            "the test's own deadline for Version passed",
        )),
    }
}

/// Asserts that `result` failed with `code` and a message containing every one of `words` (exactly, or else
/// ignoring case). Returns the status for further checks.
#[track_caller]
pub fn assert_status<T: Debug>(result: Result<T, Status>, code: Code, words: &[&str]) -> Status {
    let status = match result {
        Ok(response) => {
            panic!("expected {code:?} mentioning {words:?}, got a response: {response:?}")
        }
        Err(status) => status,
    };
    assert_eq!(
        status.code(),
        code,
        "expected {code:?} mentioning {words:?}, got {:?}: {}",
        status.code(),
        status.message()
    );
    assert_message_mentions(status.message(), words);
    // Shown with --nocapture: the exact texts are worth reading when reviewing messages.
    eprintln!("got the expected {:?}: {}", status.code(), status.message());
    status
}

/// Asserts that `message` contains every one of `words` (exactly, or else ignoring case).
#[track_caller]
pub fn assert_message_mentions(message: &str, words: &[&str]) {
    let lower = message.to_lowercase();
    for word in words {
        assert!(
            message.contains(word) || lower.contains(&word.to_lowercase()),
            "message does not mention {word:?}: {message}"
        );
    }
}

/// The file at `path` in `response`.
#[track_caller]
pub fn file<'a>(response: &'a MountResponse, path: &str) -> &'a File {
    response
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| {
            panic!(
                "no file {path:?} in the response; files: {:?}",
                file_paths(response)
            )
        })
}

/// The contents of the file at `path`, as UTF-8.
#[track_caller]
pub fn text(response: &MountResponse, path: &str) -> String {
    let contents = &file(response, path).contents;
    String::from_utf8(contents.clone())
        .unwrap_or_else(|_| panic!("file {path:?} is not UTF-8: {contents:?}"))
}

/// The version reported for object `id`.
#[track_caller]
pub fn object_version<'a>(response: &'a MountResponse, id: &str) -> &'a str {
    response
        .object_version
        .iter()
        .find(|v| v.id == id)
        .map(|v| v.version.as_str())
        .unwrap_or_else(|| {
            panic!(
                "no object version for {id:?}; versions: {:?}",
                response.object_version
            )
        })
}

/// The paths of all files, sorted.
pub fn file_paths(response: &MountResponse) -> Vec<String> {
    let mut paths: Vec<String> = response.files.iter().map(|f| f.path.clone()).collect();
    paths.sort();
    paths
}

/// A response's files as (path, mode, contents) and versions as (id, version), each sorted.
pub type Normalized = (Vec<(String, i32, Vec<u8>)>, Vec<(String, String)>);

/// Files and versions, sorted, for comparing two responses.
pub fn normalized(response: &MountResponse) -> Normalized {
    let mut files: Vec<_> = response
        .files
        .iter()
        .map(|f| (f.path.clone(), f.mode, f.contents.clone()))
        .collect();
    files.sort();
    let mut versions: Vec<_> = response
        .object_version
        .iter()
        .map(|v| (v.id.clone(), v.version.clone()))
        .collect();
    versions.sort();
    (files, versions)
}
