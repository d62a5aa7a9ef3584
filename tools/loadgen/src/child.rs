//! The server under load, as `run` and `market` see it: a child process (this binary in
//! `server` mode) with a temporary data folder, and the URL and tokens it announces.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tempfile::TempDir;
use url::{Host, Url};

/// Opening the market, migrating, compiling echo once and seeding take a few seconds in a
/// release build; a debug build or a busy machine takes longer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
/// Graceful shutdown lets requests in flight finish; there are none once the load stops.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Server {
    child: Child,
    pub url: Url,
    pub tenant_token: String,
    pub operator_token: String,
    /// The `bench` publisher's token (every scope).
    pub publisher_token: String,
    _data: TempDir,
}

impl Server {
    /// Starts `nexus-loadgen server` on a fresh data folder (and `database` if given) and
    /// waits for its announcement. Blocking.
    pub fn start(database: Option<&str>) -> anyhow::Result<Self> {
        match database {
            Some(url) => Self::spawn(&["--database", url]),
            None => Self::spawn(&[]),
        }
    }

    /// As [`Server::start`], with the server's delivery worker held until [`Server::deliver`].
    pub fn start_holding(database: Option<&str>) -> anyhow::Result<Self> {
        match database {
            Some(url) => Self::spawn(&["--hold-deliveries", "--database", url]),
            None => Self::spawn(&["--hold-deliveries"]),
        }
    }

    /// Starts the delivery worker of a server started with [`Server::start_holding`].
    pub fn deliver(&mut self) -> anyhow::Result<()> {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().context("the server's stdin is closed")?;
        stdin.write_all(b"deliver\n")?;
        Ok(stdin.flush()?)
    }

    /// Starts `nexus-loadgen server --bare`, the comparator of `run --vs-bare`. Blocking.
    pub fn start_bare() -> anyhow::Result<Self> {
        Self::spawn(&["--bare"])
    }

    fn spawn(options: &[&str]) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new().prefix("nexus-loadgen-").tempdir()?;
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("server").arg("--data-dir").arg(data.path()).args(options);
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("spawn")?;
        let stdout = child.stdout.take().context("the server's stdout is not piped")?;
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = line_tx.send(lines.next());
            // Keep draining so a chatty server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = Self {
            child,
            url: Url::parse("http://127.0.0.1/")?,
            tenant_token: String::new(),
            operator_token: String::new(),
            publisher_token: String::new(),
            _data: data,
        };
        let line = match line_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the server exited before it announced its URL ({:?})", server.child.try_wait())
            }
            Ok(Some(Err(error))) => bail!("reading the server's announcement: {error}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("the server did not announce itself within {STARTUP_TIMEOUT:?}")
            }
        };
        let announced: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("the server announced `{line}`"))?;
        server.url = loopback_url(announced["url"].as_str().context("no `url` in the announcement")?)?;
        let token = |name: &str| announced[name].as_str().map(str::to_string).with_context(|| format!("no `{name}`"));
        server.tenant_token = token("tenant_token")?;
        server.operator_token = token("operator_token")?;
        server.publisher_token = token("publisher_token")?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the server's stdin (its signal to shut down gracefully) and waits for it;
    /// kills it if it lingers.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        drop(self.child.stdin.take());
        let started = Instant::now();
        while started.elapsed() < STOP_TIMEOUT {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        bail!("the server did not stop within {STOP_TIMEOUT:?} of stdin closing; killed it")
    }
}

impl Drop for Server {
    /// On any early exit, never leave the server running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `text` as a URL, if it is plain HTTP to this machine's loopback interface: the load
/// generator must never be pointed at anything else.
pub fn loopback_url(text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text).with_context(|| format!("`{text}` is not a URL"))?;
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(_)) | None => false,
    };
    ensure!(
        url.scheme() == "http" && loopback,
        "refusing to load {url}: only http:// to a loopback address is allowed"
    );
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        assert_eq!(loopback_url("http://127.0.0.1:8080").unwrap().port(), Some(8080));
        assert!(loopback_url("http://[::1]:80/").is_ok());
        assert!(loopback_url("http://127.9.9.9:1").is_ok());
        for refused in ["http://10.0.0.1:80", "http://example.com", "https://127.0.0.1:1", "http://localhost.evil:1"] {
            assert!(loopback_url(refused).is_err(), "{refused} was accepted");
        }
    }
}
