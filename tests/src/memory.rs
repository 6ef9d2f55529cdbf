//! What a process holds in memory, from `/proc/<pid>/status`, for tests that bound a server's memory.

use anyhow::Context;

/// Resident and peak memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMemory {
    /// `VmRSS`, in bytes.
    pub rss_bytes: u64,
    /// `VmHWM` (peak resident set), in bytes.
    pub peak_rss_bytes: u64,
}

impl ProcessMemory {
    /// Reads the memory figures of process `pid`.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let path = format!("/proc/{pid}/status");
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("{path} has no {name}"))?;
            let kib: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("{path}: cannot read {line:?}"))?;
            Ok(kib * 1024)
        };
        Ok(Self {
            rss_bytes: field("VmRSS:")?,
            peak_rss_bytes: field("VmHWM:")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_is_readable() -> anyhow::Result<()> {
        let memory = ProcessMemory::of(std::process::id())?;
        assert!(
            memory.rss_bytes > 0 && memory.peak_rss_bytes >= memory.rss_bytes,
            "{memory:?}"
        );
        Ok(())
    }
}
