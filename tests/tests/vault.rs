//! Black-box tests of the provider against a real OpenBao, driven as the Secrets Store CSI driver drives it.
//!
//! One plain-HTTP OpenBao (and one TLS OpenBao, for the TLS tests) is shared by the whole binary; every test
//! works under its own id: its own namespace, role, policy, secret paths and mounts. Each test runs its own
//! provider process, so logs and flags never mix.

#[path = "vault/support.rs"]
mod support;

#[path = "vault/auth.rs"]
mod auth;
#[path = "vault/cache.rs"]
mod cache;
#[path = "vault/dialects.rs"]
mod dialects;
#[path = "vault/errors.rs"]
mod errors;
#[path = "vault/forged.rs"]
mod forged;
#[path = "vault/kv.rs"]
mod kv;
#[path = "vault/legacy.rs"]
mod legacy;
#[path = "vault/logs.rs"]
mod logs;
#[path = "vault/pki.rs"]
mod pki;
#[path = "vault/render.rs"]
mod render;
#[path = "vault/tls.rs"]
mod tls;
#[path = "vault/versions.rs"]
mod versions;
