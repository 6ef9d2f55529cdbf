//! Reliability and security: bad input, faults, isolation and secrecy, each area printing its figures.
//!
//! - `corpus`: every case of `tests/corpus/mount_requests.jsonl` through one real provider, whose backends are all
//!   closed ports: right code, the field named, nothing hung, no panic, memory bounded.
//! - `faults`: a stopped backend, a hung one (a [`SilentBackend`](courier_tests::SilentBackend) past
//!   `--mount-timeout`), SIGKILL during a burst of mounts with a retrying client, stale and contested sockets.
//! - `isolation`: an identity refused a secret is refused every time, right after and during the allowed
//!   identity's reads, under every static-reuse window, for KV, a kept database lease and AWS (IRSA).
//! - `secrecy`: successful and failing mounts with the provider (and the driver shim's local mode) at trace
//!   level; no seeded value (raw, base64, URL-safe base64, hex) nor any token reaches a log line, a message or
//!   `/metrics`; files carry exactly the requested modes; sockets are owner-only.
//! - `transport`: CONTINUATION floods, oversize frames and header blocks, slowloris clients, a thousand idle
//!   connections, connections over the cap and EMFILE, each answered as HTTP/2 prescribes while `Version` is
//!   still served on fresh connections.
//!
//! One OpenBao (with PostgreSQL behind its database engine) and one moto are shared by the binary; every test
//! works under its own ids and runs its own provider processes. Figures are printed (`--nocapture`) and kept in
//! `target/tmp/reliability/<area>.txt`.

#[path = "reliability/leak_search.rs"]
mod leak_search;
#[path = "reliability/shim_local.rs"]
mod shim_local;
#[path = "reliability/support.rs"]
mod support;

#[path = "reliability/corpus.rs"]
mod corpus;
#[path = "reliability/faults.rs"]
mod faults;
#[path = "reliability/isolation.rs"]
mod isolation;
#[path = "reliability/secrecy.rs"]
mod secrecy;
#[path = "reliability/transport.rs"]
mod transport;
