//! The object store behind the fake: etcd-like keys, one cluster-wide resourceVersion, a change history for
//! watches, and the API server's create/update/patch/delete semantics and errors.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::patch::{json_patch, merge_patch, strategic_merge_patch};
use super::resources::KubeResource;
use super::validate;
use crate::pod::{random_suffix, random_uid};

/// `(storage key of the resource, namespace or "" when cluster-scoped, name)`.
pub(crate) type Key = (String, String, String);

/// An error as the API server answers it: a status code and a `Status` object.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) code: StatusCode,
    pub(crate) body: Value,
}

/// A `Status` object.
pub(crate) fn status_body(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Value {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    body
}

fn details(res: &KubeResource, name: &str) -> Value {
    let mut details = json!({"name": name, "kind": res.plural});
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    details
}

impl Failure {
    pub(crate) fn new(
        code: StatusCode,
        reason: &str,
        message: &str,
        details: Option<Value>,
    ) -> Self {
        Self {
            code,
            body: status_body(code, reason, message, details),
        }
    }

    pub(crate) fn not_found(res: &KubeResource, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} {name:?} not found", res.qualified()),
            Some(details(res, name)),
        )
    }

    fn already_exists(res: &KubeResource, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("{} {name:?} already exists", res.qualified()),
            Some(details(res, name)),
        )
    }

    fn conflict(res: &KubeResource, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                res.qualified()
            ),
            Some(details(res, name)),
        )
    }

    fn stale(res: &KubeResource, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    fn invalid(res: &KubeResource, name: &str, causes: &validate::Causes) -> Self {
        let rendered: Vec<String> = causes
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect();
        let message = if rendered.len() == 1 {
            format!("{} {name:?} is invalid: {}", res.kind, rendered[0])
        } else {
            format!(
                "{} {name:?} is invalid: [{}]",
                res.kind,
                rendered.join(", ")
            )
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(field, message)| json!({"reason": "FieldValueInvalid", "message": message, "field": field}))
            .collect();
        let mut details = json!({"name": name, "kind": res.kind, "causes": causes});
        if !res.group.is_empty() {
            details["group"] = json!(res.group);
        }
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &message,
            Some(details),
        )
    }

    pub(crate) fn bad_request(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message, None)
    }

    fn internal(message: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("Internal error occurred: {message}"),
            None,
        )
    }

    pub(crate) fn unsupported_media_type(message: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            message,
            None,
        )
    }

    pub(crate) fn method_not_allowed(message: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            message,
            None,
        )
    }

    pub(crate) fn gone(message: &str) -> Self {
        Self::new(StatusCode::GONE, "Expired", message, None)
    }
}

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) resource_version: u64,
    pub(crate) kind: &'static str,
    pub(crate) store_key: String,
    pub(crate) namespace: String,
    pub(crate) object: Value,
}

/// Every object, the cluster-wide resourceVersion and the change history.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) objects: BTreeMap<Key, Value>,
    pub(crate) last_resource_version: u64,
    pub(crate) history: Vec<Change>,
    /// Watches from a resourceVersion below this get `410 Gone` (the history before it was compacted).
    pub(crate) compacted_below: u64,
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(map)) => map,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// `object` with `status` as `old` has it, when `res` serves a status subresource: a write to the main
/// resource cannot change it.
fn keep_status(res: &KubeResource, old: &Value, mut object: Value) -> Value {
    if !res.has_status_subresource() {
        return object;
    }
    if let Value::Object(map) = &mut object {
        match old.get("status") {
            Some(status) => {
                map.insert("status".to_owned(), status.clone());
            }
            None => {
                map.remove("status");
            }
        }
    }
    object
}

/// Everything but `metadata` and `status`: what bumps `generation` when it changes.
fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Value::Object(map) = &mut copy {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    pub(crate) fn key(res: &KubeResource, namespace: &str, name: &str) -> Key {
        let namespace = if res.namespaced { namespace } else { "" };
        (res.store_key(), namespace.to_owned(), name.to_owned())
    }

    fn bump(&mut self) -> u64 {
        self.last_resource_version += 1;
        self.last_resource_version
    }

    fn record(&mut self, kind: &'static str, key: &Key, object: &Value) {
        self.history.push(Change {
            resource_version: self.last_resource_version,
            kind,
            store_key: key.0.clone(),
            namespace: key.1.clone(),
            object: object.clone(),
        });
    }

    /// Drops the change history: watches from before now get `410 Gone`, as after an etcd compaction.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted_below = self.last_resource_version;
    }

    pub(crate) fn get(&self, res: &KubeResource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Self::key(res, namespace, name))
    }

    /// Checks and normalises a body for `res` in `namespace`: kind and apiVersion, namespace, Secret data.
    fn prepare(res: &KubeResource, namespace: &str, body: Value) -> Result<Value, Failure> {
        let Value::Object(_) = &body else {
            return Err(Failure::bad_request(&format!(
                "the object provided is unrecognized (must be of type {})",
                res.kind
            )));
        };
        let mut object = body;
        let stored = res.stored();
        if let Some(kind) = object
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            && kind != res.kind
        {
            return Err(Failure::bad_request(&format!(
                "the object provided is unrecognized (must be of type {}): kind {kind:?} does not match",
                res.kind
            )));
        }
        if let Some(api_version) = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
            if group != res.group || super::resources::find(group, version, res.plural).is_none() {
                return Err(Failure::bad_request(&format!(
                    "the API version in the data ({api_version}) does not match the expected API version ({})",
                    res.api_version()
                )));
            }
        }
        object["kind"] = json!(res.kind);
        object["apiVersion"] = json!(stored.api_version());
        let meta = meta_mut(&mut object);
        if res.namespaced {
            match meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                None => {
                    meta.insert("namespace".to_owned(), json!(namespace));
                }
                Some(given) if given != namespace => {
                    return Err(Failure::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                Some(_) => {}
            }
        } else {
            meta.remove("namespace");
        }
        if res.group.is_empty() && res.plural == "secrets" {
            secret_data(&mut object)?;
        }
        Ok(object)
    }

    fn validate(res: &KubeResource, object: &Value) -> Result<(), Failure> {
        let mut causes = validate::Causes::new();
        validate::metadata(object, &mut causes);
        validate::resource(res, object, &mut causes);
        if causes.is_empty() {
            Ok(())
        } else {
            Err(Failure::invalid(
                res,
                text(object, "/metadata/name"),
                &causes,
            ))
        }
    }

    /// POST: creates `body`. With `keep_uid` (the tests' own setup) a uid in the body is kept; the API server
    /// always assigns one.
    pub(crate) fn create(
        &mut self,
        res: &KubeResource,
        namespace: &str,
        body: Value,
        dry_run: bool,
        keep_uid: bool,
    ) -> Result<Value, Failure> {
        let mut object = Self::prepare(res, namespace, body)?;
        if res.has_status_subresource()
            && !keep_uid
            && let Value::Object(map) = &mut object
        {
            // The API server drops `status` on create when the resource has a status subresource.
            map.remove("status");
        }
        if !text(&object, "/metadata/resourceVersion").is_empty() {
            return Err(Failure::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if text(&object, "/metadata/name").is_empty() {
            let prefix = text(&object, "/metadata/generateName").to_owned();
            if prefix.is_empty() {
                return Err(Failure::invalid(
                    res,
                    "",
                    &vec![(
                        "metadata.name".to_owned(),
                        "Required value: name or generateName is required".to_owned(),
                    )],
                ));
            }
            let name = loop {
                let candidate = format!("{prefix}{}", random_suffix());
                if self.get(res, namespace, &candidate).is_none() {
                    break candidate;
                }
            };
            meta_mut(&mut object).insert("name".to_owned(), json!(name));
        }
        Self::validate(res, &object)?;
        let name = text(&object, "/metadata/name").to_owned();
        let key = Self::key(res, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(Failure::already_exists(res, &name));
        }
        let uid = match text(&object, "/metadata/uid") {
            given if keep_uid && !given.is_empty() => given.to_owned(),
            _ => random_uid(),
        };
        let meta = meta_mut(&mut object);
        meta.insert("uid".to_owned(), json!(uid));
        meta.insert("creationTimestamp".to_owned(), json!(now_rfc3339()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        if res.is_custom() {
            meta.insert("generation".to_owned(), json!(1));
        } else {
            meta.remove("generation");
        }
        if dry_run {
            return Ok(object);
        }
        let rv = self.bump();
        meta_mut(&mut object).insert("resourceVersion".to_owned(), json!(rv.to_string()));
        self.objects.insert(key.clone(), object.clone());
        self.record("ADDED", &key, &object);
        Ok(object)
    }

    /// PUT: replaces `name` with `body`, refusing a stale resourceVersion or another uid.
    pub(crate) fn update(
        &mut self,
        res: &KubeResource,
        namespace: &str,
        name: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, Failure> {
        let object = Self::prepare(res, namespace, body)?;
        let body_name = text(&object, "/metadata/name");
        if body_name != name {
            return Err(Failure::bad_request(&format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let old = self
            .get(res, namespace, name)
            .cloned()
            .ok_or_else(|| Failure::not_found(res, name))?;
        Self::preconditions(res, name, &old, &object)?;
        let object = keep_status(res, &old, object);
        self.commit(res, namespace, name, &old, object, dry_run, false)
    }

    /// Status subresource PUT/PATCH: only `status` of `body` is taken.
    pub(crate) fn update_status(
        &mut self,
        res: &KubeResource,
        namespace: &str,
        name: &str,
        body: &Value,
        dry_run: bool,
    ) -> Result<Value, Failure> {
        let old = self
            .get(res, namespace, name)
            .cloned()
            .ok_or_else(|| Failure::not_found(res, name))?;
        Self::preconditions(res, name, &old, body)?;
        let mut object = old.clone();
        match body.get("status") {
            Some(status) => object["status"] = status.clone(),
            None => {
                if let Value::Object(map) = &mut object {
                    map.remove("status");
                }
            }
        }
        self.commit(res, namespace, name, &old, object, dry_run, false)
    }

    fn preconditions(
        res: &KubeResource,
        name: &str,
        old: &Value,
        new: &Value,
    ) -> Result<(), Failure> {
        let wanted = text(new, "/metadata/resourceVersion");
        if !wanted.is_empty() && wanted != text(old, "/metadata/resourceVersion") {
            return Err(Failure::stale(res, name));
        }
        let uid = text(new, "/metadata/uid");
        if !uid.is_empty() && uid != text(old, "/metadata/uid") {
            return Err(Failure::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    text(old, "/metadata/uid")
                ),
            ));
        }
        Ok(())
    }

    /// PATCH: applies `patch` in the format `content_type` names.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        res: &KubeResource,
        namespace: &str,
        name: &str,
        content_type: &str,
        patch: &Value,
        dry_run: bool,
        status_only: bool,
    ) -> Result<Value, Failure> {
        let old = self
            .get(res, namespace, name)
            .cloned()
            .ok_or_else(|| Failure::not_found(res, name))?;
        let mut patched = old.clone();
        match content_type {
            "application/merge-patch+json" => merge_patch(&mut patched, patch),
            "application/json-patch+json" => {
                json_patch(&mut patched, patch).map_err(|e| {
                    Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e, None)
                })?;
            }
            "application/strategic-merge-patch+json" if res.is_custom() => {
                return Err(Failure::unsupported_media_type(&format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml \
                     (strategic merge patch is not supported for custom resources such as {})",
                    res.qualified()
                )));
            }
            "application/strategic-merge-patch+json" => {
                strategic_merge_patch(&mut patched, patch)
                    .map_err(|e| Failure::unsupported_media_type(&e))?;
            }
            other => {
                return Err(Failure::unsupported_media_type(&format!(
                    "this fake API server applies merge-patch, json-patch and (for built-in types) \
                     strategic-merge-patch, not {other:?}; server-side apply is not served"
                )));
            }
        }
        // A resourceVersion or uid written into the patch is a precondition, as on the real server.
        Self::preconditions(res, name, &old, &patched)?;
        if text(&patched, "/metadata/name") != name {
            return Err(Failure::bad_request(
                "metadata.name cannot be changed by a patch",
            ));
        }
        if status_only {
            return self.update_status(res, namespace, name, &patched, dry_run);
        }
        let object = keep_status(res, &old, Self::prepare(res, namespace, patched)?);
        self.commit(res, namespace, name, &old, object, dry_run, false)
    }

    /// Stores `object` over `old`: identity and system fields come from `old` (unless `new_identity`), a no-op
    /// changes nothing, and removing the last finalizer of a deleting object deletes it.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        res: &KubeResource,
        namespace: &str,
        name: &str,
        old: &Value,
        mut object: Value,
        dry_run: bool,
        new_identity: bool,
    ) -> Result<Value, Failure> {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let changed_spec = spec_part(old) != spec_part(&object);
        let meta = meta_mut(&mut object);
        for field in [
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
        ] {
            match old.pointer(&format!("/metadata/{field}")) {
                Some(value) => meta.insert(field.to_owned(), value.clone()),
                None => meta.remove(field),
            };
        }
        if !new_identity || text(&object, "/metadata/uid").is_empty() {
            meta_mut(&mut object).insert("uid".to_owned(), json!(text(old, "/metadata/uid")));
        }
        if res.is_custom() {
            meta_mut(&mut object).insert(
                "generation".to_owned(),
                json!(generation + u64::from(changed_spec)),
            );
        }
        Self::validate(res, &object)?;
        if object == *old {
            return Ok(object);
        }
        let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        let finalizers_left = object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if dry_run {
            return Ok(object);
        }
        let key = Self::key(res, namespace, name);
        let rv = self.bump();
        meta_mut(&mut object).insert("resourceVersion".to_owned(), json!(rv.to_string()));
        if deleting && !finalizers_left {
            self.objects.remove(&key);
            self.record("DELETED", &key, &object);
        } else {
            self.objects.insert(key.clone(), object.clone());
            self.record("MODIFIED", &key, &object);
        }
        Ok(object)
    }

    /// The tests' own create-or-replace: no resourceVersion check, and a uid in `body` is kept.
    pub(crate) fn put(
        &mut self,
        res: &KubeResource,
        namespace: &str,
        mut body: Value,
    ) -> Result<Value, Failure> {
        let name = text(&body, "/metadata/name").to_owned();
        meta_mut(&mut body).remove("resourceVersion");
        match self.get(res, namespace, &name).cloned() {
            None => self.create(res, namespace, body, false, true),
            Some(old) => {
                let object = Self::prepare(res, namespace, body)?;
                self.commit(res, namespace, &name, &old, object, false, true)
            }
        }
    }

    /// DELETE: removes `name`, or marks it deleting while finalizers remain.
    pub(crate) fn delete(
        &mut self,
        res: &KubeResource,
        namespace: &str,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Value, Failure> {
        let old = self
            .get(res, namespace, name)
            .cloned()
            .ok_or_else(|| Failure::not_found(res, name))?;
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            let wanted = text(options, &format!("/preconditions/{field}"));
            let have = text(&old, &format!("/metadata/{field}"));
            if !wanted.is_empty() && wanted != have {
                return Err(Failure::conflict(
                    res,
                    name,
                    &format!(
                        "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {have}"
                    ),
                ));
            }
        }
        let key = Self::key(res, namespace, name);
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() || dry_run {
                return Ok(old);
            }
            let mut object = old;
            let rv = self.bump();
            let meta = meta_mut(&mut object);
            meta.insert("deletionTimestamp".to_owned(), json!(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
            meta.insert("resourceVersion".to_owned(), json!(rv.to_string()));
            self.objects.insert(key.clone(), object.clone());
            self.record("MODIFIED", &key, &object);
            return Ok(object);
        }
        let mut success = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "kind": res.plural, "uid": text(&old, "/metadata/uid")},
        });
        if !res.group.is_empty() {
            success["details"]["group"] = json!(res.group);
        }
        if dry_run {
            return Ok(success);
        }
        let mut object = old;
        let rv = self.bump();
        meta_mut(&mut object).insert("resourceVersion".to_owned(), json!(rv.to_string()));
        self.objects.remove(&key);
        self.record("DELETED", &key, &object);
        Ok(success)
    }

    /// Deletes, as the garbage collector does, every object with owner references none of whose owners
    /// exists any more (matched by uid), until nothing more goes. Returns the keys deleted.
    pub(crate) fn collect_garbage(&mut self) -> Vec<Key> {
        let mut deleted = Vec::new();
        loop {
            let uids: std::collections::HashSet<String> = self
                .objects
                .values()
                .map(|o| text(o, "/metadata/uid").to_owned())
                .collect();
            let orphans: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o.pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|owners| {
                            !owners.is_empty()
                                && owners
                                    .iter()
                                    .all(|owner| !uids.contains(text(owner, "/uid")))
                        })
                })
                .map(|(k, _)| k.clone())
                .collect();
            if orphans.is_empty() {
                return deleted;
            }
            for key in orphans {
                if let Some(mut object) = self.objects.remove(&key) {
                    let rv = self.bump();
                    meta_mut(&mut object)
                        .insert("resourceVersion".to_owned(), json!(rv.to_string()));
                    self.record("DELETED", &key, &object);
                    deleted.push(key);
                }
            }
        }
    }
}

/// Secrets: `stringData` is folded into `data` (base64), `data` must be base64, `type` defaults to `Opaque`.
fn secret_data(object: &mut Value) -> Result<(), Failure> {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(Value::Object(data)) = object.get("data") {
        for (key, value) in data {
            let Some(text) = value.as_str() else {
                return Err(Failure::bad_request(&format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: data[{key}] is not a string"
                )));
            };
            if let Err(e) = engine.decode(text) {
                return Err(Failure::bad_request(&format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data: {e}"
                )));
            }
        }
    }
    if let Some(Value::Object(string_data)) = object.get("stringData").cloned() {
        if !object.get("data").is_some_and(Value::is_object) {
            object["data"] = json!({});
        }
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            object["data"][key] = json!(engine.encode(text));
        }
    }
    if let Value::Object(map) = object {
        map.remove("stringData");
        if map
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            map.insert("type".to_owned(), json!("Opaque"));
        }
    }
    Ok(())
}
