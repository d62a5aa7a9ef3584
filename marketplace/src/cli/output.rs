//! Human-readable printing of invocations, shared by `plugin run` and `demo`.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use nexus_host::Invocation;

/// How long work runs before [`waiting`] says what it waits for.
const QUIET_FOR: Duration = Duration::from_millis(1500);

/// Awaits `work`; when it takes longer than a moment, says on stderr what it waits for and
/// for how long (a spinner with the seconds on a terminal, a line before and after
/// otherwise), so a first compile of a large component does not look like a hang.
pub async fn waiting<T>(what: &str, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let mut work = std::pin::pin!(work);
    if let Ok(done) = tokio::time::timeout(QUIET_FOR, &mut work).await {
        return done;
    }
    let spinner = ProgressBar::new_spinner();
    if spinner.is_hidden() {
        eprintln!("{what}...");
    } else if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        spinner.set_style(style);
    }
    spinner.set_message(what.to_string());
    spinner.enable_steady_tick(Duration::from_millis(200));
    let done = work.await;
    spinner.finish_and_clear();
    eprintln!("{what}: done in {:.1} s", started.elapsed().as_secs_f64());
    done
}

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

/// Plugin-controlled text made safe for a terminal: control characters (newlines, carriage
/// returns, escape sequences, bells, backspaces) and bidirectional overrides are shown
/// escaped, so a plugin cannot forge output lines or drive the terminal of whoever runs it.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}');
        // Line and paragraph separators end a line in some terminals and viewers.
        let breaks = matches!(c, '\u{2028}' | '\u{2029}');
        if c.is_control() || bidi || breaks {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints the outcome, then logs (the first `max_log_lines` of them), usage and resource
/// figures.
pub fn print_invocation(invocation: &Invocation, max_log_lines: usize) {
    let report = &invocation.report;
    match &invocation.result {
        Ok(outcome) => {
            println!("outcome   ok");
            println!("data      {}", outcome.data.as_deref().map_or_else(|| "(none)".into(), shown));
            for action in &outcome.actions {
                println!("action    {} {}", shown(&action.kind), shown(&action.payload));
            }
        }
        Err(error) => println!("outcome   {} — {}", error.code(), shown(&error.to_string())),
    }
    for line in report.logs.iter().take(max_log_lines) {
        let at = Duration::from_micros(line.at_micros);
        println!(
            "log       +{:<9} {:<5} {}",
            duration(at),
            format!("{:?}", line.level).to_lowercase(),
            shown(&line.message)
        );
    }
    if report.logs.len() > max_log_lines {
        println!("log       … {} more lines", report.logs.len() - max_log_lines);
    }
    for stream in [&report.stdout, &report.stderr] {
        for line in stream.lines().filter(|l| !l.is_empty()) {
            println!("stdio     {}", shown(line));
        }
    }
    // Meter names are validated by the host (lowercase, digits, `-`): nothing to escape.
    let usage: Vec<String> = report.usage.iter().map(|(meter, units)| format!("{meter}={units}")).collect();
    if !usage.is_empty() {
        println!("usage     {}", usage.join(", "));
    }
    for denial in &report.denials {
        println!("denied    {}: {}", denial.capability, shown(&denial.detail));
    }
    if report.denials_dropped > 0 {
        println!("denied    … {} more refused calls", report.denials_dropped);
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

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn control_text_is_escaped() {
        assert_eq!(shown("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(shown("a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(shown("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(shown("\u{7}\u{8}\u{202E}"), "\\u{7}\\u{8}\\u{202e}");
        // A plugin cannot start a line of its own that reads like the verdict.
        for forged in ["x\noutcome   ok", "x\u{2028}outcome   ok", "x\u{85}outcome   ok", "x\r\noutcome   ok"] {
            assert!(!shown(forged).contains(['\n', '\r', '\u{2028}', '\u{85}']), "{forged:?}");
        }
    }
}
