//! What an operator adopting Courier relies on, black-box: `courier-provider check` on SecretProviderClass files
//! (offline, same errors as a mount), the logs (level per target, no colours in files, a stable JSON field set),
//! every metric the shipped dashboard and alerts query present in a real provider's `/metrics`, and the Vault
//! set-up guide run as written against OpenBao before a mount through Courier.

#[path = "operations/support.rs"]
mod support;

#[path = "operations/check.rs"]
mod check;
#[path = "operations/logs.rs"]
mod logs;
#[path = "operations/scrape.rs"]
mod scrape;
#[path = "operations/setup_guide.rs"]
mod setup_guide;
