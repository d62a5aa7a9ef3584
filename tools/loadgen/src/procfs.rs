//! What the kernel says about the server and the machine: resident memory from
//! `/proc/<pid>/status`, CPU time from `/proc/<pid>/stat` and `/proc/stat`. CPU figures are
//! in clock ticks of `USER_HZ`, which Linux fixes at 100 a second for these files.

/// `USER_HZ`: the unit of CPU times in `/proc`.
const TICKS_PER_SECOND: f64 = 100.0;

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the high-water mark of `VmRSS` since the process started (the kernel
    /// updates it lazily, so it can trail a fresh `VmRSS` reading slightly).
    pub hwm_kib: u64,
}

/// `VmRSS` and `VmHWM` of `pid`, or None once it is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|line| line.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
    };
    Some(Memory { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")? })
}

/// CPU time used so far by the server, by this process and by the whole machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub server: u64,
    pub loadgen: u64,
    pub machine: u64,
}

impl Cpu {
    pub fn now(server: u32) -> Option<Self> {
        Some(Self {
            server: process_ticks(server)?,
            loadgen: process_ticks(std::process::id())?,
            machine: machine_ticks()?,
        })
    }

    /// Average cores busy between `self` and `later` over `seconds`: the server, the load
    /// generator, and everything else (PostgreSQL, other builds).
    pub fn cores_until(&self, later: &Self, seconds: f64) -> [f64; 3] {
        let server = later.server.saturating_sub(self.server);
        let loadgen = later.loadgen.saturating_sub(self.loadgen);
        let machine = later.machine.saturating_sub(self.machine);
        let others = machine.saturating_sub(server + loadgen);
        [server, loadgen, others].map(|ticks| ticks as f64 / TICKS_PER_SECOND / seconds)
    }
}

/// `utime + stime` of `pid`: fields 14 and 15 of `/proc/<pid>/stat`, counted after the
/// command name, which is in parentheses and may hold spaces.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // After the name, the state is field 3, so utime (14) and stime (15) sit at 11 and 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Busy time of all CPUs: the `cpu` line of `/proc/stat` less idle and iowait.
fn machine_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().ok()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    Some(total - values.get(3)? - values.get(4)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let memory = memory(std::process::id()).unwrap();
        assert!(memory.rss_kib > 0 && memory.hwm_kib > 0, "{memory:?}");
        let before = Cpu::now(std::process::id()).unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(100) {
            std::hint::black_box(spin.elapsed());
        }
        let after = Cpu::now(std::process::id()).unwrap();
        assert!(after.loadgen > before.loadgen && after.machine >= after.loadgen - before.loadgen, "{after:?}");
    }
}
