//! The shim's log filter and output: `--log-level` sets the shim's own level, the
//! HTTP/2 and gRPC crates stay at `warn` unless `--log-filter` names them, and
//! colours only go to a terminal. The JSON field set matches the provider's
//! (README, "Logs").

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Other crates' most verbose level unless a `--log-filter` directive asks for more.
const LIBRARY_LEVEL: LevelFilter = LevelFilter::WARN;

/// The directives: a plain `level` applies to `courier_driver_shim` and other crates get
/// at most `warn`; a directive list is taken as written; `extra` is appended (a later
/// directive for the same target wins).
fn directives(level: &str, extra: Option<&str>) -> String {
    let level = level.trim();
    let mut out = match level.parse::<LevelFilter>() {
        Ok(own) => {
            let own_name = own.to_string().to_lowercase();
            let others = std::cmp::min(own, LIBRARY_LEVEL).to_string().to_lowercase();
            vec![others, format!("courier_driver_shim={own_name}")]
        }
        Err(_) => level.split(',').map(str::to_owned).collect(),
    };
    for directive in extra.unwrap_or_default().split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let target = directive.split_once('=').map_or("", |(t, _)| t);
        out.retain(|d| d.split_once('=').map_or("", |(t, _)| t) != target);
        out.push(directive.to_owned());
    }
    out.retain(|d| !d.trim().is_empty());
    out.join(",")
}

/// Installs the global subscriber on stderr.
pub fn init(level: &str, extra: Option<&str>, json: bool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let directives = directives(level, extra);
    let filter = EnvFilter::try_new(&directives).with_context(|| format!("--log-level/--log-filter {directives:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    }
    .map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn level_is_the_shims_and_libraries_need_a_target() {
        assert_eq!(directives("debug", None), "warn,courier_driver_shim=debug");
        assert_eq!(directives("debug", Some("h2=trace")), "warn,courier_driver_shim=debug,h2=trace");
        assert_eq!(directives("info", Some("trace")), "courier_driver_shim=info,trace");
        assert_eq!(directives("courier_driver_shim=trace,info", None), "courier_driver_shim=trace,info");
    }
}
