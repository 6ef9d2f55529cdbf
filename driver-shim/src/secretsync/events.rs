//! Events on a SecretSync: what changed and what failed, never a value.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};

use super::{API_VERSION, KIND};

/// The API server refuses Event messages over this many bytes.
const MAX_EVENT_MESSAGE_BYTES: usize = 1024;
/// Name in Events' source.
const COMPONENT: &str = "courier-secretsync";

/// The SecretSync an Event is about.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// UID.
    pub uid: &'a str,
}

/// Records an Event of `type_` (`Normal`, `Warning`) on `subject`. Failures are logged, never fatal.
pub async fn record(
    client: &kube::Client,
    instance: &str,
    subject: &Subject<'_>,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", subject.name)),
            namespace: Some(subject.namespace.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(API_VERSION.to_owned()),
            kind: Some(KIND.to_owned()),
            name: Some(subject.name.to_owned()),
            namespace: Some(subject.namespace.to_owned()),
            uid: Some(subject.uid.to_owned()),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(super::status::truncate(message, MAX_EVENT_MESSAGE_BYTES)),
        type_: Some(type_.to_owned()),
        source: Some(EventSource {
            component: Some(COMPONENT.to_owned()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        action: Some(reason.to_owned()),
        count: Some(1),
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), subject.namespace);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::warn!(secretsync.namespace = subject.namespace, secretsync.name = subject.name, reason, error = %e, "cannot record an event");
    }
}
