//! The server's memory, from `/proc/<pid>/status`: resident set (`VmRSS`) at the start, every
//! second while sending and at the end, and the peak (`VmHWM`, the kernel's high-water mark, so a
//! spike between samples still counts).

use super::report::MemoryReport;
use anyhow::Context;
use std::time::{Duration, Instant};

/// One reading of `/proc/<pid>/status`, KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` (in kB, as the kernel writes them) from a status file's text.
pub fn parse_status(text: &str) -> Status {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Status { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:") }
}

pub fn read(pid: u32) -> anyhow::Result<Status> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_status(&text))
}

/// The reading at the start of the send phase (`None` without a pid).
pub fn start(pid: Option<u32>) -> anyhow::Result<Option<Status>> {
    pid.map(read).transpose()
}

/// The memory section of the report: the start reading, the samples, and a final reading.
pub fn finish(
    pid: Option<u32>,
    start: Option<Status>,
    samples: Samples,
) -> anyhow::Result<Option<MemoryReport>> {
    let (Some(pid), Some(start)) = (pid, start) else { return Ok(None) };
    let end = read(pid)?;
    Ok(Some(MemoryReport {
        peak_kib: end.hwm_kib.max(start.hwm_kib),
        rss_start_kib: start.rss_kib,
        rss_end_kib: end.rss_kib,
        samples,
    }))
}

/// `(seconds since the start, VmRSS KiB)` readings.
pub type Samples = Vec<(f64, u64)>;

/// Samples `VmRSS` every second in the background until stopped.
pub struct Sampler {
    task: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Samples>)>,
}

impl Sampler {
    /// `(seconds since started, RSS KiB)` every second; nothing without a pid.
    pub fn spawn(pid: Option<u32>, started: Instant) -> Self {
        let Some(pid) = pid else { return Self { task: None } };
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Ok(status) = read(pid) {
                            samples.push((started.elapsed().as_secs_f64(), status.rss_kib));
                        }
                    }
                    _ = &mut stopped => return samples,
                }
            }
        });
        Self { task: Some((stop, handle)) }
    }

    /// Stops sampling and hands the samples over.
    pub async fn stop(self) -> Samples {
        let Some((stop, handle)) = self.task else { return Vec::new() };
        let _ = stop.send(());
        handle.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_peak_are_read_in_kib() {
        let text = "Name:\tdrawdown\nVmPeak:\t  900000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_status(text), Status { rss_kib: 40960, hwm_kib: 51234 });
        assert_eq!(parse_status("nothing"), Status::default());
    }

    #[test]
    fn this_process_has_memory() {
        let me = read(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib, "{me:?}");
    }
}
