//! Several `nexus serve` nodes on one PostgreSQL: started at the same moment on a fresh
//! database, every node comes up and the migrations are applied exactly once.

use std::io::BufRead;
use std::process::{Command, Stdio};

/// Starts `count` nodes at once on `url`; each one's first stdout line (or why it ended).
/// Their data folders go with `dirs`.
fn start_together(url: &str, count: usize, dirs: &[tempfile::TempDir]) -> Vec<(std::process::Child, String)> {
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
    let children: Vec<std::process::Child> = dirs
        .iter()
        .take(count)
        .map(|dir| {
            Command::new(env!("CARGO_BIN_EXE_nexus"))
                .args(["serve", "--listen", "127.0.0.1:0", "--database", url, "--data-dir"])
                .arg(dir.path())
                .env("NEXUS_MASTER_KEY", &key)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|mut child| {
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            if line.is_empty() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
                line = format!("exited {:?}: {stderr}", child.wait().unwrap().code());
            }
            (child, line)
        })
        .collect()
}

#[test]
fn nodes_started_together_on_a_fresh_database_all_come_up() {
    for _ in 0..3 {
        let url = nexus_testkit::Postgres::shared().fresh_database();
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let nodes = start_together(&url, 3, &dirs);
        for (_, line) in &nodes {
            assert!(line.starts_with("nexus serving on http://127.0.0.1:"), "{line}");
        }
        for (mut child, _) in nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let migrated = super::common::runtime().block_on(async {
            let db = nexus_registry::Db::connect(&url).await.unwrap();
            let registry: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM registry_migrations").fetch_one(&db.pool).await.unwrap();
            let marketplace: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM marketplace_migrations").fetch_one(&db.pool).await.unwrap();
            (registry, marketplace)
        });
        assert_eq!(migrated.1, 2, "each marketplace migration recorded once");
        assert!(migrated.0 >= 1);
    }
}
