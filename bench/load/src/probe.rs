//! Reads a server process's own accounting: CPU time and resident memory from `/proc/PID/...`.

use std::path::PathBuf;

use crate::LoadError;

/// Linux reports `utime`/`stime` in clock ticks of `USER_HZ`, which is 100 on every architecture we run
/// on (it is fixed for the /proc ABI, independent of the kernel's internal HZ).
const USER_HZ: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

/// Samples a process by pid.
#[derive(Debug, Clone)]
pub struct ProcProbe {
    root: PathBuf,
}

impl ProcProbe {
    pub fn new(pid: u32) -> Self {
        Self {
            root: PathBuf::from(format!("/proc/{pid}")),
        }
    }

    pub fn sample(&self) -> Result<ProcSample, LoadError> {
        let stat = std::fs::read_to_string(self.root.join("stat"))?;
        let status = std::fs::read_to_string(self.root.join("status"))?;
        Ok(ProcSample {
            cpu_s: parse_cpu_ticks(&stat)? as f64 / USER_HZ,
            rss_kib: parse_rss_kib(&status)?,
        })
    }
}

/// Busy CPU-seconds of the whole machine since boot (all CPUs), from the first line of `/proc/stat`.
pub fn system_busy_s() -> Result<f64, LoadError> {
    Ok(parse_system_busy_ticks(&std::fs::read_to_string("/proc/stat")?)? as f64 / USER_HZ)
}

/// Ticks spent in anything but idle and iowait, summed over CPUs (`cpu` line of `/proc/stat`).
pub fn parse_system_busy_ticks(stat: &str) -> Result<u64, LoadError> {
    let bad = || LoadError::Probe("unexpected /proc/stat".into());
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(bad)?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice: already counted in user/nice]
    if v.len() < 8 {
        return Err(bad());
    }
    Ok(v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
}

/// utime + stime (fields 14 and 15) of `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Result<u64, LoadError> {
    let bad = || LoadError::Probe(format!("unexpected /proc stat line: {stat:?}"));
    let rest = &stat[stat.rfind(')').ok_or_else(bad)? + 1..];
    // After ")": field 3 (state) is the first; utime is field 14, i.e. index 11 here.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields
        .get(11)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    let stime: u64 = fields
        .get(12)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    Ok(utime + stime)
}

/// `VmRSS:` of `/proc/PID/status`, in KiB.
pub fn parse_rss_kib(status: &str) -> Result<u64, LoadError> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| LoadError::Probe("no VmRSS in /proc status".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_nasty_command_name() {
        let stat = "1234 (we ird) (name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1000 \
                    1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 325);
        assert!(parse_cpu_ticks("garbage").is_err());
        assert!(parse_cpu_ticks("1 (x) S 1").is_err());
    }

    #[test]
    fn system_busy_from_proc_stat() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(parse_system_busy_ticks(stat).unwrap(), 161);
        assert!(parse_system_busy_ticks("cpu0 1 2 3\n").is_err());
        assert!(system_busy_s().unwrap() > 0.0);
    }

    #[test]
    fn rss_from_status() {
        let status = "Name:\tconvene\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_rss_kib(status).unwrap(), 12345);
        assert!(parse_rss_kib("Name: x\n").is_err());
    }

    #[test]
    fn samples_this_process() {
        let s = ProcProbe::new(std::process::id()).sample().unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.cpu_s >= 0.0);
    }
}
