//! `Version` probes: how quickly a provider answers a fresh connection while something else (an attack, a
//! corpus of hostile requests) keeps it busy.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;

use crate::calls::version;
use crate::connect_unix;

/// The median latency of `Version` on a fresh connection during an attack: a few milliseconds normally, bounded
/// generously for a debug build on two loaded cores.
pub const VERSION_MEDIAN: Duration = Duration::from_millis(50);
/// The median latency of connecting and calling `Version`: bounds the accept path (a back-off of a second or a
/// refused connection would show), generously for the same machine.
pub const CONNECT_AND_VERSION_MEDIAN: Duration = Duration::from_millis(150);

/// `Version` on fresh connections: the call's latency (the connection already up), the latency of connecting and
/// calling together, and the failures.
pub struct Probes {
    /// Each call's latency, the connection already up.
    pub latencies: Vec<Duration>,
    /// Connecting and calling together.
    pub with_connect: Vec<Duration>,
    /// Calls that failed.
    pub failures: Vec<String>,
}

/// The median of `values` (`Duration::MAX` when empty).
pub fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or(Duration::MAX)
}

impl Probes {
    /// The median call latency.
    pub fn median(&self) -> Duration {
        median(&self.latencies)
    }

    /// Checks the probes taken during `attack`: none failed, medians within bounds. Returns the summary line.
    pub fn check(&self, attack: &str) -> anyhow::Result<String> {
        let max = self.latencies.iter().max().copied().unwrap_or_default();
        let line = format!(
            "{attack}: Version on a fresh connection during the attack: {} calls, median {} ms (max {} ms), \
             with connecting median {} ms, {} failed",
            self.latencies.len(),
            self.median().as_millis(),
            max.as_millis(),
            median(&self.with_connect).as_millis(),
            self.failures.len()
        );
        ensure!(self.failures.is_empty(), "{attack}: Version failed during the attack: {:?}", self.failures);
        ensure!(
            self.median() <= VERSION_MEDIAN,
            "{attack}: median Version latency {:?} over {VERSION_MEDIAN:?}: {:?}",
            self.median(),
            self.latencies
        );
        ensure!(
            median(&self.with_connect) <= CONNECT_AND_VERSION_MEDIAN,
            "{attack}: median latency of connecting and calling Version {:?} over {CONNECT_AND_VERSION_MEDIAN:?}: {:?}",
            median(&self.with_connect),
            self.with_connect
        );
        Ok(line)
    }
}

/// Calls `Version` `count` times, each on a fresh connection to `socket`.
pub async fn probe(socket: &Path, count: usize) -> Probes {
    let mut probes = Probes { latencies: Vec::new(), with_connect: Vec::new(), failures: Vec::new() };
    for _ in 0..count {
        let started = Instant::now();
        let result = async {
            let mut client =
                courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient::new(
                    connect_unix(socket).await?,
                );
            let called = Instant::now();
            version(&mut client).await.map_err(anyhow::Error::from)?;
            anyhow::Ok(called.elapsed())
        }
        .await;
        match result {
            Ok(call) => {
                probes.latencies.push(call);
                probes.with_connect.push(started.elapsed());
            }
            Err(e) => probes.failures.push(format!("{e:#}")),
        }
    }
    probes
}

