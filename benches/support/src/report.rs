//! What a benchmark report names besides its numbers: the machine, its load, the date.

/// `"<n> vCPU <CPU model>"` from `/proc/cpuinfo` and the available parallelism.
pub fn machine() -> String {
    format!("{} vCPU {}", cpu_count(), cpu_model())
}

/// The number of CPUs this process may use (0 if unknown).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The CPU model from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned())
}

/// The 1-, 5- and 15-minute load averages from `/proc/loadavg`, space-separated.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The output of `date ARGS` (for example `["-u", "+%Y-%m-%d %H:%M UTC"]`), or "unknown date".
pub fn date(args: &[&str]) -> String {
    std::process::Command::new("date")
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown date".to_owned(), |s| s.trim().to_owned())
}
