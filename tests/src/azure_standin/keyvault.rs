//! Key Vault's data plane for the stand-in: `GET /vaults/{vault}/{secrets|keys|certificates}/{name}[/{version}]`
//! and `.../{name}/versions`, in the order Key Vault checks a request: throttling, `api-version`, the bearer token
//! (`401` with the challenge), the access policy (`403 AccessDenied`), the object (`404 ...NotFound`) and whether
//! the version is enabled (`403 ...Disabled`).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use serde_json::{Map, Value, json};

use super::store::{Kind, Object, Vault, Version, cert_json, key_json, secret_json};
use super::{AzureApi, KEYVAULT_RESOURCE, Reply, Shared, now};

/// `api-version`s the stand-in serves: 7.4 and later, as the provider must send.
const API_VERSIONS: &[&str] = &["7.4", "7.5", "7.6", "2025-07-01"];
/// The newest of them, named in the error for an unknown one.
const LATEST_API_VERSION: &str = "7.6";
/// Key Vault's page size limit for `maxresults` (and the default).
const MAX_RESULTS: usize = 25;

/// The three object kinds and how Key Vault names them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ObjectKind {
    Secret,
    Key,
    Certificate,
}

impl ObjectKind {
    fn parse(segment: &str) -> Option<Self> {
        match segment {
            "secrets" => Some(Self::Secret),
            "keys" => Some(Self::Key),
            "certificates" => Some(Self::Certificate),
            _ => None,
        }
    }

    fn segment(self) -> &'static str {
        match self {
            Self::Secret => "secrets",
            Self::Key => "keys",
            Self::Certificate => "certificates",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Key => "key",
            Self::Certificate => "certificate",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Secret => "Secret",
            Self::Key => "Key",
            Self::Certificate => "Certificate",
        }
    }
}

/// What a request asks for.
enum Target<'a> {
    /// One version; `None` is the current one.
    Get(Option<&'a str>),
    /// The list of versions.
    Versions,
}

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

fn forbidden(inner: &str, message: &str) -> Reply {
    Reply::json(
        StatusCode::FORBIDDEN,
        json!({"error": {"code": "Forbidden", "message": message, "innererror": {"code": inner}}}),
    )
}

pub(super) fn handle(state: &Shared, method: &Method, rest: &str, query: Option<&str>, headers: &HeaderMap) -> Reply {
    if let Some(fault) = state.take_fault(AzureApi::KeyVault) {
        let reply = match fault.retry_after {
            Some(seconds) => error(
                fault.status,
                "Throttled",
                &format!("Request was not processed because too many requests were received. Reason: A generic error has occurred. Please retry after {seconds} seconds."),
            )
            .header(header::RETRY_AFTER, &seconds.to_string()),
            None => error(fault.status, "ServiceUnavailable", "The service is temporarily unavailable. Please retry."),
        };
        return reply;
    }
    let params: BTreeMap<String, String> =
        query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let Some(api_version) = params.get("api-version") else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid or missing api-version parameter.",
        );
    };
    if !API_VERSIONS.contains(&api_version.as_str()) {
        let message = format!(
            "The specified version ({api_version}) is not recognized. Consider using the latest supported version ({LATEST_API_VERSION})."
        );
        return error(StatusCode::BAD_REQUEST, "BadParameter", &message);
    }
    let token = match authenticate(state, headers) {
        Ok(token) => token,
        Err(message) => {
            let challenge =
                format!("Bearer authorization=\"{}/{}\", resource=\"{KEYVAULT_RESOURCE}\"", state.base, state.tenant);
            return error(StatusCode::UNAUTHORIZED, "Unauthorized", message)
                .header(header::WWW_AUTHENTICATE, &challenge);
        }
    };
    let reply = route(state, method, rest, &params, api_version, &token);
    reply.by(Some(&token.tenant), Some(&token.client_id))
}

/// The access token the request carries, or the message of Key Vault's `401`.
fn authenticate(state: &Shared, headers: &HeaderMap) -> Result<super::AccessToken, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err("AKV10000: Request is missing a Bearer or PoP token.");
    };
    let bearer =
        value.to_str().ok().and_then(|v| v.split_once(' ')).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"));
    let Some((_, presented)) = bearer else {
        return Err("AKV10000: Request is missing a Bearer or PoP token.");
    };
    let Some(token) = state.lock().tokens.get(presented.trim()).cloned() else {
        return Err("[BearerReadAccessTokenFailed] Error while attempting to read the access token.");
    };
    if token.expires_at <= now() {
        return Err("[TokenExpired] Error validating token: 'S2S12086'.");
    }
    if token.tenant != state.tenant {
        return Err("AKV10032: Invalid issuer.");
    }
    Ok(token)
}

fn route(
    state: &Shared,
    method: &Method,
    rest: &str,
    params: &BTreeMap<String, String>,
    api_version: &str,
    token: &super::AccessToken,
) -> Reply {
    let segments: Vec<&str> = rest.strip_suffix('/').unwrap_or(rest).split('/').collect();
    let (vault, kind, name, target) = match segments.as_slice() {
        [vault, kind, name] => (*vault, ObjectKind::parse(kind), *name, Target::Get(None)),
        [vault, kind, name, "versions"] => (*vault, ObjectKind::parse(kind), *name, Target::Versions),
        [vault, kind, name, version] => (*vault, ObjectKind::parse(kind), *name, Target::Get(Some(*version))),
        _ => (rest, None, rest, Target::Versions),
    };
    let Some(kind) = kind.filter(|_| !vault.is_empty() && !name.is_empty()) else {
        return error(StatusCode::NOT_FOUND, "NotFound", "The requested resource was not found.");
    };
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("The {method} method is not allowed here."),
        );
    }
    let operation = if matches!(target, Target::Versions) { "list" } else { "get" };
    let vault_key = vault.to_ascii_lowercase();
    let inner = state.lock();
    if !inner.grants.contains(&(vault_key.clone(), token.client_id.clone())) {
        let message = format!(
            "The user, group or application 'appid={};oid={};iss=https://sts.windows.net/{}/' does not have {} {operation} permission on key vault '{vault};location=westeurope'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
            token.client_id,
            token.object_id,
            token.tenant,
            kind.segment(),
        );
        return forbidden("AccessDenied", &message);
    }
    let base = state.vault_base(vault);
    let Some(stored) = inner.vaults.get(&vault_key) else {
        return not_found(kind, name, None);
    };
    let page = match Page::parse(params) {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    let name_key = name.to_ascii_lowercase();
    let answer = match kind {
        ObjectKind::Secret => serve(&stored.secrets, kind, name, &name_key, &target, |o, v| secret_json(&base, o, v)),
        ObjectKind::Key => serve(&stored.keys, kind, name, &name_key, &target, |o, v| key_json(&base, o, v)),
        ObjectKind::Certificate => {
            serve(&stored.certificates, kind, name, &name_key, &target, |o, v| cert_json(&base, o, v))
        }
    };
    match answer {
        Served::One(reply) => reply,
        Served::List(items) => {
            let object_name = object_name(stored, kind, &name_key).unwrap_or_else(|| name.to_owned());
            let link = format!("{base}/{}/{object_name}/versions", kind.segment());
            page.answer(items, &link, api_version)
        }
    }
}

fn object_name(vault: &Vault, kind: ObjectKind, key: &str) -> Option<String> {
    match kind {
        ObjectKind::Secret => vault.secrets.get(key).map(|o| o.name.clone()),
        ObjectKind::Key => vault.keys.get(key).map(|o| o.name.clone()),
        ObjectKind::Certificate => vault.certificates.get(key).map(|o| o.name.clone()),
    }
}

enum Served {
    One(Reply),
    List(Vec<Value>),
}

/// Looks the target up in `objects`; `render(object, version)` makes a version's full body, which a versions
/// listing cuts down to its item.
fn serve<T>(
    objects: &Kind<T>,
    kind: ObjectKind,
    name: &str,
    key: &str,
    target: &Target<'_>,
    render: impl Fn(&Object<T>, &Version<T>) -> Value,
) -> Served {
    let Some(object) = objects.get(key) else {
        return Served::One(not_found(kind, name, None));
    };
    match target {
        Target::Versions => Served::List(object.versions.iter().map(|v| list_item(&render(object, v), kind)).collect()),
        Target::Get(version) => {
            let found = match version {
                Some(id) => object.versions.iter().find(|v| v.id.eq_ignore_ascii_case(id)),
                None => object.versions.last(),
            };
            let Some(found) = found else {
                return Served::One(not_found(kind, name, *version));
            };
            if !found.enabled && kind != ObjectKind::Certificate {
                let message = format!("Operation get is not allowed on a disabled {}.", kind.singular());
                return Served::One(forbidden(&format!("{}Disabled", kind.title()), &message));
            }
            Served::One(Reply::json(StatusCode::OK, render(object, found)))
        }
    }
}

/// A versions-listing item: the full body without the value, key material, certificate or policy.
fn list_item(full: &Value, kind: ObjectKind) -> Value {
    let mut item = Map::new();
    let keep: &[&str] = match kind {
        ObjectKind::Secret => &["id", "attributes", "contentType", "managed", "tags"],
        ObjectKind::Key => &["attributes", "managed", "tags"],
        ObjectKind::Certificate => &["id", "x5t", "attributes", "tags"],
    };
    for field in keep {
        if let Some(value) = full.get(*field) {
            item.insert((*field).to_owned(), value.clone());
        }
    }
    if kind == ObjectKind::Key
        && let Some(kid) = full["key"].get("kid")
    {
        item.insert("kid".to_owned(), kid.clone());
    }
    Value::Object(item)
}

fn not_found(kind: ObjectKind, name: &str, version: Option<&str>) -> Reply {
    let id = version.map_or_else(|| name.to_owned(), |v| format!("{name}/{v}"));
    let message = format!(
        "A {} with (name/id) {id} was not found in this key vault. If you recently deleted this {} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
        kind.singular(),
        kind.singular(),
    );
    error(StatusCode::NOT_FOUND, &format!("{}NotFound", kind.title()), &message)
}

/// Paging of a versions listing: `maxresults` (1 to 25) and the `$skiptoken` of a `nextLink`.
struct Page {
    size: usize,
    offset: usize,
}

impl Page {
    fn parse(params: &BTreeMap<String, String>) -> Result<Self, Reply> {
        let size = match params.get("maxresults") {
            None => MAX_RESULTS,
            Some(text) => match text.parse::<usize>() {
                Ok(size) if (1..=MAX_RESULTS).contains(&size) => size,
                _ => {
                    let message =
                        format!("Invalid value for maxresults: {text}. The value must be between 1 and {MAX_RESULTS}.");
                    return Err(error(StatusCode::BAD_REQUEST, "BadParameter", &message));
                }
            },
        };
        let offset = match params.get("$skiptoken") {
            None => 0,
            Some(token) => BASE64URL
                .decode(token)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|text| text.strip_prefix("offset:").and_then(|n| n.parse().ok()))
                .ok_or_else(|| error(StatusCode::BAD_REQUEST, "BadParameter", "The skip token is not valid."))?,
        };
        Ok(Self { size, offset })
    }

    fn answer(&self, items: Vec<Value>, link: &str, api_version: &str) -> Reply {
        let total = items.len();
        let page: Vec<Value> = items.into_iter().skip(self.offset).take(self.size).collect();
        let next = self.offset.saturating_add(self.size);
        let next_link = if next < total {
            let token = BASE64URL.encode(format!("offset:{next}"));
            Value::String(format!("{link}?api-version={api_version}&$skiptoken={token}&maxresults={}", self.size))
        } else {
            Value::Null
        };
        Reply::json(StatusCode::OK, json!({"value": page, "nextLink": next_link}))
    }
}
