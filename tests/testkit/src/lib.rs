//! Test support shared by the crates' integration tests: a throwaway PostgreSQL cluster,
//! started from the server binaries on the machine (never mocked), one per test process.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the cluster runs as the
//! `postgres` user. A watchdog shell stops the server and deletes its folder when the test
//! process exits, however it exits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where Debian puts the server binaries.
const BIN_DIRS: &[&str] = &["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"];

/// A running cluster on 127.0.0.1.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    databases: AtomicUsize,
}

impl Postgres {
    /// The cluster of this test process, started on first use.
    pub fn shared() -> &'static Postgres {
        static CLUSTER: OnceLock<Postgres> = OnceLock::new();
        CLUSTER.get_or_init(|| Postgres::start().unwrap_or_else(|error| panic!("cannot start PostgreSQL: {error}")))
    }

    /// A URL for a new, empty database in the cluster.
    pub fn fresh_database(&self) -> String {
        let name = format!("test_{}_{}", std::process::id(), self.databases.fetch_add(1, Ordering::Relaxed));
        let status = Command::new(bin("psql").unwrap_or_else(|| "psql".into()))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .stdout(Stdio::null())
            .status();
        assert!(matches!(status, Ok(s) if s.success()), "CREATE DATABASE {name} failed: {status:?}");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn start() -> Result<Self, String> {
        let initdb = bin("initdb")
            .ok_or("initdb not found: install PostgreSQL 15 server binaries (apt-get install postgresql-15)")?;
        let postgres = bin("postgres").ok_or("postgres binary not found")?;
        let folder = tempfile::Builder::new().prefix("nexus-pg-").tempdir().map_err(|e| e.to_string())?.keep();
        let as_root = is_root();
        if as_root {
            run(Command::new("chown").arg("-R").arg("postgres:postgres").arg(&folder))?;
        }
        let data = folder.join("data");
        run(as_user(as_root, &initdb)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&data))?;
        let port = free_port()?;
        // The watchdog: start the server, wait while the test process lives, then stop the
        // server and remove its folder.
        let script = format!(
            "'{postgres}' -D '{data}' -p {port} -k '{folder}' -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 > '{folder}/log' 2>&1 & \
             pg=$!; while [ -d /proc/{parent} ]; do sleep 0.5; done; kill -INT $pg; wait $pg; rm -rf '{folder}'",
            postgres = postgres.display(),
            data = data.display(),
            folder = folder.display(),
            parent = std::process::id(),
        );
        as_user(as_root, Path::new("/bin/sh"))
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn postgres: {e}"))?;
        wait_ready(port, &folder)?;
        Ok(Self { port, databases: AtomicUsize::new(0) })
    }
}

fn bin(name: &str) -> Option<PathBuf> {
    BIN_DIRS.iter().map(|dir| Path::new(dir).join(name)).find(|path| path.exists())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// `program` run as the `postgres` user when we are root, else as ourselves.
fn as_user(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn wait_ready(port: u16, folder: &Path) -> Result<(), String> {
    let ready = bin("pg_isready").ok_or("pg_isready not found")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let status = Command::new(&ready).args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"]).status();
        if matches!(status, Ok(s) if s.success()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(folder.join("log")).unwrap_or_default();
    Err(format!("PostgreSQL did not become ready on port {port} within 30 s:\n{log}"))
}
