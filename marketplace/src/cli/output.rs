//! Human-readable printing of invocations, shared by `plugin run` and `demo`.

use std::time::Duration;

use nexus_host::Invocation;

pub fn duration(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros < 1_000 { format!("{micros} µs") } else { format!("{:.1} ms", micros as f64 / 1_000.0) }
}

pub fn bytes(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

/// Prints the outcome, then logs (the first `max_log_lines` of them), usage and resource
/// figures.
pub fn print_invocation(invocation: &Invocation, max_log_lines: usize) {
    let report = &invocation.report;
    match &invocation.result {
        Ok(outcome) => {
            println!("outcome   ok");
            println!("data      {}", outcome.data.as_deref().unwrap_or("(none)"));
            for action in &outcome.actions {
                println!("action    {} {}", action.kind, action.payload);
            }
        }
        Err(error) => println!("outcome   {} — {error}", error.code()),
    }
    for line in report.logs.iter().take(max_log_lines) {
        let at = Duration::from_micros(line.at_micros);
        println!("log       +{:<9} {:<5} {}", duration(at), format!("{:?}", line.level).to_lowercase(), line.message);
    }
    if report.logs.len() > max_log_lines {
        println!("log       … {} more lines", report.logs.len() - max_log_lines);
    }
    for stream in [&report.stdout, &report.stderr] {
        for line in stream.lines().filter(|l| !l.is_empty()) {
            println!("stdio     {line}");
        }
    }
    let usage: Vec<String> = report.usage.iter().map(|(meter, units)| format!("{meter}={units}")).collect();
    if !usage.is_empty() {
        println!("usage     {}", usage.join(", "));
    }
    for denial in &report.denials {
        println!("denied    {}: {}", denial.capability, denial.detail);
    }
    println!(
        "resources {} wall, {} fuel, {} peak memory, {} HTTP request(s), {} KV write(s) committed",
        duration(Duration::from_micros(report.duration_us)),
        report.fuel_used,
        bytes(report.peak_memory_bytes),
        report.http_requests,
        report.kv_writes,
    );
}
