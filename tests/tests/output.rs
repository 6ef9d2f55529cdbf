//! Black-box tests of how fetched objects become files: `expandKeys` fan-out (Vault KV v1/v2, Secrets Manager
//! JSON, SSM paths), `templates`, `encoding`/`objectEncoding`, and error messages that say what to fix, on every
//! socket (`vault`, `openbao`, `aws`, and the native `courier` with each `backend`).
//!
//! One OpenBao (JWT auth) and one moto serve the whole binary, with one service-account token signer both trust;
//! every test works under its own id and runs its own provider process. AWS cases each get their own recording
//! proxy in front of moto, which checks web identity tokens as STS does.

#[path = "output/support.rs"]
mod support;

#[path = "output/encoding.rs"]
mod encoding;
#[path = "output/expand.rs"]
mod expand;
#[path = "output/expand_aws.rs"]
mod expand_aws;
#[path = "output/expand_errors.rs"]
mod expand_errors;
#[path = "output/messages.rs"]
mod messages;
#[path = "output/templates.rs"]
mod templates;
