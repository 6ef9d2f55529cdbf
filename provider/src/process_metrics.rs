//! The process metrics every Prometheus exporter is expected to have, read on
//! each scrape from the kernel: CPU time (`getrusage`), resident memory
//! (`/proc/self/status`), open and allowed descriptors (`/proc/self/fd`,
//! `getrlimit`) and the start time. Unprefixed standard names, so existing
//! dashboards and alerts for `process_*` work unchanged.

use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Longest `/proc/self/status` read: the file is about 1.5 KiB.
const MAX_STATUS_BYTES: u64 = 64 * 1024;

/// Collects the process metrics when scraped.
#[derive(Debug)]
pub(crate) struct ProcessCollector {
    /// Seconds since the epoch when the metrics were created, at process start.
    start_time: f64,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        let start_time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Self { start_time }
    }
}

/// One reading of the process's figures; a figure the kernel would not give is `None`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// User plus system CPU seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size in bytes.
    pub resident_bytes: Option<i64>,
    /// Open file descriptors.
    pub open_fds: Option<i64>,
    /// The soft limit of open file descriptors.
    pub max_fds: Option<i64>,
}

impl Reading {
    /// Reads the figures now.
    #[must_use]
    pub(crate) fn now() -> Self {
        Self { cpu_seconds: cpu_seconds(), resident_bytes: resident_bytes(), open_fds: open_fds(), max_fds: max_fds() }
    }
}

fn cpu_seconds() -> Option<f64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(usage.user_time()) + secs(usage.system_time()))
}

fn resident_bytes() -> Option<i64> {
    use std::io::Read as _;
    let mut status = String::new();
    std::fs::File::open("/proc/self/status").ok()?.take(MAX_STATUS_BYTES).read_to_string(&mut status).ok()?;
    parse_vm_rss(&status)
}

/// `VmRSS:     11840 kB` in bytes.
fn parse_vm_rss(status: &str) -> Option<i64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: i64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

fn open_fds() -> Option<i64> {
    // The directory's own descriptor, open while it is read, is not counted.
    let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
    i64::try_from(count.saturating_sub(1)).ok()
}

fn max_fds() -> Option<i64> {
    let (soft, _hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    Some(i64::try_from(soft).unwrap_or(i64::MAX))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reading = Reading::now();
        if let Some(cpu) = reading.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", reading.resident_bytes),
            ("process_open_fds", "Open file descriptors", reading.open_fds),
            ("process_max_fds", "Most file descriptors the process may open", reading.max_fds),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
            }
        }
        let start = ConstGauge::new(self.start_time);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let r = Reading::now();
        assert!(r.cpu_seconds.is_some_and(|c| c >= 0.0), "{r:?}");
        assert!(r.resident_bytes.is_some_and(|b| b > 0), "{r:?}");
        assert!(r.open_fds.is_some_and(|n| n >= 3), "{r:?}");
        assert!(r.max_fds.is_some_and(|n| n >= r.open_fds.unwrap_or(0)), "{r:?}");
    }

    #[test]
    fn vm_rss_parsing_refuses_odd_lines() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t   11840 kB\n"), Some(11840 * 1024));
        assert_eq!(parse_vm_rss("VmRSS: lots kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: 12 MB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: 99999999999999999999 kB\n"), None);
        assert_eq!(parse_vm_rss(""), None);
    }
}
