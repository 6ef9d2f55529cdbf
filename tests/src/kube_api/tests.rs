//! The fake against raw HTTP and against the real `kube` client (including its watcher and reflector).

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use serde_json::{Value, json};

use super::*;

async fn get(api: &FakeKubeApi, path: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let mut request = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{}{path}", api.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

async fn client(api: &FakeKubeApi) -> anyhow::Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(api.kubeconfig_path())?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

fn spcps_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(SECRETS_STORE_GROUP, "v1", "SecretProviderClassPodStatus"),
        "secretproviderclasspodstatuses",
    )
}

fn spc_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(SECRETS_STORE_GROUP, "v1", "SecretProviderClass"),
        "secretproviderclasses",
    )
}

fn api_status(error: &kube::Error) -> (u16, String, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone(), status.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn updates_bump_the_resource_version_and_keep_the_uid() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let first = api.put_service_account("team-a", "app", [("a", "1")]);
    let uid = api
        .service_account("team-a", "app")
        .and_then(|sa| sa["metadata"]["uid"].as_str().map(str::to_owned));
    let second = api.put_service_account("team-a", "app", [("a", "2")]);
    assert!(second.parse::<u64>()? > first.parse::<u64>()?);
    let same = api.put_service_account("team-a", "app", [("a", "2")]);
    assert_eq!(
        same, second,
        "a no-op write does not bump the resourceVersion"
    );
    let (code, sa) = get(
        &api,
        "/api/v1/namespaces/team-a/serviceaccounts/app",
        Some(api.token()),
    )
    .await?;
    assert_eq!(code, 200);
    assert_eq!(sa["metadata"]["annotations"]["a"], "2");
    assert_eq!(sa["metadata"]["resourceVersion"], second.as_str());
    assert_eq!(sa["metadata"]["uid"].as_str(), uid.as_deref());
    Ok(())
}

#[tokio::test]
async fn wrong_tokens_get_401_and_faults_answer_as_configured() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    api.put_service_account("team-a", "app", [("a", "1")]);
    let path = service_account_path("team-a", "app");
    let (code, body) = get(&api, &path, Some("wrong")).await?;
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));
    let (code, _) = get(&api, &path, None).await?;
    assert_eq!(code, 401);
    let (code, _) = get(&api, "/version", None).await?;
    assert_eq!(code, 200);

    api.set_fault(Some(KubeFault::Forbidden));
    let (code, body) = get(&api, &path, Some(api.token())).await?;
    assert_eq!(code, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot get resource \"serviceaccounts\""),
        "{body}"
    );
    api.set_fault(Some(KubeFault::Unavailable));
    let (code, _) = get(&api, &path, Some(api.token())).await?;
    assert_eq!(code, 503);
    api.set_fault(None);
    let (code, _) = get(&api, &path, Some(api.token())).await?;
    assert_eq!(code, 200);

    api.inject_fault("GET", &path, 1, KubeFault::Forbidden);
    let (code, _) = get(&api, &path, Some(api.token())).await?;
    assert_eq!(code, 403, "the injected fault answers once");
    let (code, _) = get(&api, &path, Some(api.token())).await?;
    assert_eq!(code, 200);

    assert_eq!(api.service_account_reads("team-a", "app"), 7);
    assert_eq!(api.requests().iter().filter(|r| !r.authorized).count(), 3);
    Ok(())
}

#[tokio::test]
async fn custom_resources_are_created_replaced_and_refused_as_the_api_server_does()
-> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let resource = spcps_resource();
    let spcps: Api<DynamicObject> = Api::namespaced_with(client(&api).await?, "team-a", &resource);

    let missing = spcps
        .get("p-team-a-spc")
        .await
        .expect_err("nothing there yet");
    assert_eq!(
        api_status(&missing),
        (
            404,
            "NotFound".to_owned(),
            "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io \"p-team-a-spc\" not found"
                .to_owned()
        )
    );

    let mut object = DynamicObject::new("p-team-a-spc", &resource).within("team-a");
    object.metadata.labels = Some(
        [(
            "internal.secrets-store.csi.k8s.io/node-name".to_owned(),
            "node-1".to_owned(),
        )]
        .into(),
    );
    object.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Pod".to_owned(),
            name: "p".to_owned(),
            uid: "u-1".to_owned(),
            ..Default::default()
        },
    ]);
    object.data = json!({"status": {"podName": "p", "mounted": true}});
    let created = spcps.create(&PostParams::default(), &object).await?;
    let first_version = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.data["status"]["podName"], "p");
    let again = spcps
        .create(&PostParams::default(), &object)
        .await
        .expect_err("the name is taken");
    assert_eq!(api_status(&again).0, 409);
    assert_eq!(api_status(&again).1, "AlreadyExists");

    let mut fresh = spcps.get("p-team-a-spc").await?;
    fresh.data["status"]["mounted"] = json!(false);
    let replaced = spcps
        .replace("p-team-a-spc", &PostParams::default(), &fresh)
        .await?;
    assert_ne!(
        replaced.metadata.resource_version.as_deref(),
        Some(first_version.as_str())
    );
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    assert_eq!(
        replaced.metadata.generation,
        Some(1),
        "status changes leave generation alone"
    );
    // `fresh` now carries a stale resourceVersion.
    let stale = spcps
        .replace("p-team-a-spc", &PostParams::default(), &fresh)
        .await
        .expect_err("stale");
    let (code, reason, message) = api_status(&stale);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("the object has been modified"),
        "{message}"
    );
    let stored = api
        .get(
            KubeResource::SECRET_PROVIDER_CLASS_POD_STATUSES,
            "team-a",
            "p-team-a-spc",
        )
        .context("stored")?;
    assert_eq!(
        stored["metadata"]["ownerReferences"][0]["uid"], "u-1",
        "owner references are kept as given"
    );

    let mut bad = DynamicObject::new("Not_A_Name", &resource).within("team-a");
    bad.data = json!({});
    let (code, reason, _) = api_status(
        &spcps
            .create(&PostParams::default(), &bad)
            .await
            .expect_err("invalid name"),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    let mut ownerless = DynamicObject::new("x", &resource).within("team-a");
    ownerless.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Pod".to_owned(),
            name: "p".to_owned(),
            uid: String::new(),
            ..Default::default()
        },
    ]);
    let (code, _, message) = api_status(
        &spcps
            .create(&PostParams::default(), &ownerless)
            .await
            .expect_err("empty uid"),
    );
    assert_eq!(code, 422);
    assert!(
        message.contains("metadata.ownerReferences.uid"),
        "{message}"
    );

    spcps
        .delete("p-team-a-spc", &DeleteParams::default())
        .await?;
    assert!(spcps.get_opt("p-team-a-spc").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn events_get_generated_names_and_are_validated() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let events: Api<Event> = Api::namespaced(client(&api).await?, "team-a");
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = Event {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("p.".to_owned()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".to_owned()),
            name: Some("p".to_owned()),
            namespace: Some("team-a".to_owned()),
            ..Default::default()
        },
        reason: Some("MountRotationFailed".to_owned()),
        message: Some("boom".to_owned()),
        type_: Some("Warning".to_owned()),
        event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            now,
        )),
        reporting_component: Some("courier".to_owned()),
        reporting_instance: Some("node-1".to_owned()),
        action: Some("Mount".to_owned()),
        ..Default::default()
    };
    let created = events.create(&PostParams::default(), &event).await?;
    let name = created.metadata.name.unwrap_or_default();
    assert!(
        name.starts_with("p.") && name.len() == "p.".len() + 5,
        "{name}"
    );
    assert_eq!(api.events_about("team-a", "p").len(), 1);

    let mut incomplete = event.clone();
    incomplete.action = None;
    let (code, _, message) = api_status(
        &events
            .create(&PostParams::default(), &incomplete)
            .await
            .expect_err("no action"),
    );
    assert_eq!(code, 422);
    assert!(message.contains("action: Required value"), "{message}");
    Ok(())
}

#[tokio::test]
async fn secrets_take_string_data_and_patches_check_preconditions() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let secrets: Api<Secret> = Api::namespaced(client(&api).await?, "team-a");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db", "labels": {"secrets-store.csi.k8s.io/managed": "true"}},
        "stringData": {"password": "hunter2"},
    }))?;
    let created = secrets.create(&PostParams::default(), &secret).await?;
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    let data = created.data.clone().unwrap_or_default();
    assert_eq!(
        data.get("password").map(|b| b.0.as_slice()),
        Some(&b"hunter2"[..])
    );
    let version = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();

    let patched = secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": version, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1"}]}})),
        )
        .await?;
    assert_eq!(
        patched.metadata.owner_references.as_ref().map(Vec::len),
        Some(1)
    );
    let stale = secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": version, "labels": {"a": "b"}}})),
        )
        .await
        .expect_err("the optimistic lock");
    assert_eq!(api_status(&stale).1, "Conflict");
    let unchanged = secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {}})),
        )
        .await?;
    assert_eq!(
        unchanged.metadata.resource_version, patched.metadata.resource_version,
        "a no-op patch writes nothing"
    );
    let json_patched = secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(
                json!([{"op": "add", "path": "/metadata/labels/extra", "value": "1"}]),
            )?),
        )
        .await?;
    assert_eq!(
        json_patched
            .metadata
            .labels
            .unwrap_or_default()
            .get("extra")
            .map(String::as_str),
        Some("1")
    );
    let strategic = secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs2", "uid": "rs-2"}]}})),
        )
        .await?;
    let owners: Vec<String> = strategic
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.uid)
        .collect();
    assert_eq!(
        owners,
        ["rs-1", "rs-2"],
        "a strategic merge patch merges owner references by uid"
    );
    let spcs: Api<DynamicObject> =
        Api::namespaced_with(client(&api).await?, "team-a", &spc_resource());
    api.put_secret_provider_class("team-a", "spc", "vault", [("a", "b")]);
    let (code, _, _) = api_status(
        &spcs
            .patch(
                "spc",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {}})),
            )
            .await
            .expect_err("CRD"),
    );
    assert_eq!(code, 415, "custom resources take no strategic merge patch");
    let (code, _, _) = api_status(
        &secrets
            .patch(
                "db",
                &PatchParams::apply("courier"),
                &Patch::Apply(json!({"metadata": {"name": "db"}})),
            )
            .await
            .expect_err("no apply"),
    );
    assert_eq!(code, 415, "server-side apply is refused loudly");
    let (code, reason, _) = api_status(
        &secrets
            .patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .expect_err("missing"),
    );
    assert_eq!((code, reason.as_str()), (404, "NotFound"));

    api.put_pod(
        &PodFixture::new("team-a", "app")
            .with_name("p")
            .with_uid("pod-1"),
        "node-1",
    );
    api.merge_patch(KubeResource::SECRETS, "team-a", "db", &json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "pod-1"}]}}))?;
    assert!(api.collect_garbage().is_empty(), "the owner exists");
    api.delete(KubeResource::PODS, "team-a", "p");
    assert_eq!(api.collect_garbage(), ["secrets/team-a/db"]);
    Ok(())
}

#[tokio::test]
async fn lists_select_by_label_and_page() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    for (ns, name, node) in [
        ("a", "s1", "node-1"),
        ("a", "s2", "node-2"),
        ("b", "s3", "node-1"),
        ("b", "s4", "node-1"),
    ] {
        api.put(
            KubeResource::SECRET_PROVIDER_CLASS_POD_STATUSES,
            ns,
            json!({"metadata": {"name": name, "labels": {"internal.secrets-store.csi.k8s.io/node-name": node}}}),
        )?;
    }
    let all: Api<DynamicObject> = Api::all_with(client(&api).await?, &spcps_resource());
    let on_node_1 = all
        .list(&ListParams::default().labels("internal.secrets-store.csi.k8s.io/node-name=node-1"))
        .await?;
    let names: Vec<_> = on_node_1
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(names, ["s1", "s3", "s4"]);
    assert_eq!(
        on_node_1.metadata.resource_version,
        Some(api.resource_version().to_string())
    );

    let first = all.list(&ListParams::default().limit(3)).await?;
    assert_eq!(first.items.len(), 3);
    let token = first
        .metadata
        .continue_
        .clone()
        .context("a continue token")?;
    let rest = all
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await?;
    let names: Vec<_> = rest
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(names, ["s4"]);
    assert!(rest.metadata.continue_.is_none());
    let (code, body) = get(
        &api,
        "/apis/secrets-store.csi.x-k8s.io/v1/secretproviderclasspodstatuses?labelSelector=a%20b",
        Some(api.token()),
    )
    .await?;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    Ok(())
}

#[tokio::test]
async fn the_kube_watcher_lists_then_follows_changes() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    api.put_secret_provider_class("team-a", "first", "vault", [("roleName", "a")]);
    let resource = spc_resource();
    let all: Api<DynamicObject> = Api::all_with(client(&api).await?, &resource);
    let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
    let store = writer.as_reader();
    let stream = reflector::reflector(
        writer,
        watcher(all, watcher::Config::default()).default_backoff(),
    );
    let task = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready()).await??;
    assert_eq!(store.state().len(), 1);

    api.put_secret_provider_class("team-a", "second", "vault", [("roleName", "b")]);
    api.put_secret_provider_class("team-a", "first", "vault", [("roleName", "changed")]);
    let role = |name: &str| {
        store
            .get(&reflector::ObjectRef::new_with(name, resource.clone()).within("team-a"))
            .and_then(|o| {
                o.data["spec"]["parameters"]["roleName"]
                    .as_str()
                    .map(str::to_owned)
            })
    };
    api.wait_for(
        Duration::from_secs(10),
        "the watch to deliver both changes",
        |_| (role("first").as_deref() == Some("changed") && role("second").is_some()).then_some(()),
    )
    .await?;
    api.delete(KubeResource::SECRET_PROVIDER_CLASSES, "team-a", "second");
    api.wait_for(Duration::from_secs(10), "the deletion", |_| {
        role("second").is_none().then_some(())
    })
    .await?;
    task.abort();

    let requests = api.requests();
    let list = requests
        .iter()
        .find(|r| !r.is_watch() && r.path.ends_with("/secretproviderclasses"))
        .context("a LIST")?;
    assert_eq!(
        list.query_param("limit").as_deref(),
        Some("500"),
        "kube's default page size"
    );
    let watch = requests.iter().find(|r| r.is_watch()).context("a WATCH")?;
    assert_eq!(
        watch.query_param("allowWatchBookmarks").as_deref(),
        Some("true")
    );
    assert_eq!(
        watch.query_param("sendInitialEvents"),
        None,
        "kube 5's default watcher lists first"
    );
    assert!(
        watch
            .query_param("resourceVersion")
            .is_some_and(|v| v != "0"),
        "{watch:?}"
    );
    Ok(())
}

/// Reads watch lines from a raw response until `count` arrived or the stream ended.
async fn watch_lines(api: &FakeKubeApi, query: &str, count: usize) -> anyhow::Result<Vec<Value>> {
    let url = format!(
        "{}/apis/secrets-store.csi.x-k8s.io/v1/namespaces/team-a/secretproviderclasses?watch=true&{query}",
        api.url()
    );
    let mut response = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(url)
        .bearer_auth(api.token())
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "watch answered {}",
        response.status()
    );
    let mut buffer = Vec::new();
    let mut lines = Vec::new();
    while lines.len() < count {
        let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_secs(10), response.chunk()).await?
        else {
            break;
        };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            lines.push(serde_json::from_slice(&line)?);
        }
    }
    Ok(lines)
}

#[tokio::test]
async fn watches_resume_replay_expire_and_bookmark() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let before = api.resource_version();
    api.put_secret_provider_class("team-a", "one", "vault", [("k", "1")]);
    api.put_secret_provider_class("other", "elsewhere", "vault", [("k", "1")]);
    api.put_secret_provider_class("team-a", "one", "vault", [("k", "2")]);

    let replay = watch_lines(
        &api,
        &format!("resourceVersion={before}&timeoutSeconds=1&allowWatchBookmarks=true"),
        3,
    )
    .await?;
    let kinds: Vec<&str> = replay.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "BOOKMARK"], "{replay:?}");
    assert_eq!(replay[1]["object"]["spec"]["parameters"]["k"], "2");
    assert_eq!(
        replay[2]["object"]["metadata"]["resourceVersion"],
        api.resource_version().to_string()
    );

    let initial = watch_lines(&api, "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1", 2).await?;
    assert_eq!(initial[0]["type"], "ADDED");
    assert_eq!(initial[1]["type"], "BOOKMARK");
    assert_eq!(
        initial[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    let v1alpha1 = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{}/apis/secrets-store.csi.x-k8s.io/v1alpha1/namespaces/team-a/secretproviderclasses/one", api.url()))
        .bearer_auth(api.token())
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(
        v1alpha1["apiVersion"],
        "secrets-store.csi.x-k8s.io/v1alpha1"
    );

    api.compact();
    let expired = watch_lines(&api, &format!("resourceVersion={before}"), 1).await?;
    assert_eq!(expired[0]["type"], "ERROR");
    assert_eq!(expired[0]["object"]["code"], 410);
    Ok(())
}

#[tokio::test]
async fn issuer_keys_and_discovery_are_served_once_published() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let token = api.token().to_owned();
    // Not published: 404, as on a server with issuer discovery off; never without a token.
    assert_eq!(get(&api, JWKS_PATH, Some(&token)).await?.0, 404);
    assert_eq!(get(&api, OPENID_CONFIGURATION_PATH, Some(&token)).await?.0, 404);

    let issuer = crate::TokenIssuer::new()?;
    let next = crate::TokenIssuer::new()?;
    api.publish_issuer_keys(&issuer);
    api.publish_issuer_keys(&next);
    assert_eq!(get(&api, JWKS_PATH, None).await?.0, 401);
    assert_eq!(get(&api, OPENID_CONFIGURATION_PATH, Some("wrong")).await?.0, 401);

    let (status, discovery) = get(&api, OPENID_CONFIGURATION_PATH, Some(&token)).await?;
    assert_eq!(status, 200);
    assert_eq!(discovery["issuer"], crate::KUBERNETES_ISSUER);
    assert_eq!(discovery["jwks_uri"], format!("{}{JWKS_PATH}", crate::KUBERNETES_ISSUER));

    // The real `kube` client reads the key set, and its keys verify the tokens each issuer signs.
    let client = client(&api).await?;
    let text = client.request_text(axum::http::Request::get(JWKS_PATH).body(Vec::new())?).await?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)?;
    assert_eq!(set.keys.len(), 2);
    let pod = crate::PodFixture::new("team-a", "app");
    for signer in [&issuer, &next] {
        let jwk = set.find(signer.key_id()).expect("each issuer's key is listed under its kid");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk)?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["vault"]);
        validation.set_issuer(&[crate::KUBERNETES_ISSUER]);
        let token = signer.token(&pod, "vault")?;
        jsonwebtoken::decode::<Value>(token.jwt(), &key, &validation)?;
    }
    let foreign = crate::TokenIssuer::new()?.token(&pod, "vault")?;
    assert!(set.find(&jsonwebtoken::decode_header(foreign.jwt())?.kid.unwrap_or_default()).is_none());

    // Faults apply to these paths too, and every read is recorded.
    api.inject_fault("GET", JWKS_PATH, 1, KubeFault::Unavailable);
    assert_eq!(get(&api, JWKS_PATH, Some(&token)).await?.0, 503);
    assert_eq!(get(&api, JWKS_PATH, Some(&token)).await?.0, 200);
    assert_eq!(api.jwks_reads(), 5);
    let post = reqwest::Client::builder().no_proxy().build()?.post(format!("{}{JWKS_PATH}", api.url())).bearer_auth(&token).send().await?;
    assert_eq!(post.status().as_u16(), 405);
    Ok(())
}
