//! The registry's migrations, and running any component's: once each, in order, refused when
//! an applied one was edited since.

use sha2::{Digest, Sha256};
use sqlx::Executor;

use super::{Backend, Db, now_ms, storage};
use crate::error::RegistryError;

/// Migrations in order; each runs once, in its own transaction, recorded in
/// `registry_migrations`. Never edit one that has shipped: add the next.
const SQLITE_MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_registry.sql"),
    include_str!("../../migrations/common/0002_token_origin.sql"),
];
const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_registry.sql"),
    include_str!("../../migrations/common/0002_token_origin.sql"),
];

/// The PostgreSQL advisory lock key migrations take (any constant that nothing else uses:
/// the bytes of "nexusmig").
const MIGRATION_LOCK: i64 = 0x6e65_7875_736d_6967;

impl Db {
    pub(super) async fn migrate(&self) -> Result<(), RegistryError> {
        self.apply_migrations("registry_migrations", SQLITE_MIGRATIONS, POSTGRES_MIGRATIONS).await
    }

    /// Runs the migrations of one component (the registry, the marketplace) that `table`
    /// has not recorded yet, in one transaction. Never edit a migration that has shipped:
    /// add the next one. Each applied migration's sha256 is kept (in `<table>_checksums`),
    /// and a database whose applied migrations differ from this binary's (an edited
    /// migration, or a database migrated by a newer binary) is refused before anything runs.
    pub async fn apply_migrations(&self, table: &str, sqlite: &[&str], postgres: &[&str]) -> Result<(), RegistryError> {
        let migrations = match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        let mut tx = self.writer.begin().await.map_err(storage)?;
        if self.backend == Backend::Postgres {
            // Several nodes may start at once on a fresh database: before anything is
            // touched (even the bookkeeping table, whose `CREATE TABLE IF NOT EXISTS` is not
            // safe under concurrency), one takes this lock and migrates, the others wait for
            // it and find the work done. Released when the transaction ends.
            tx.execute(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})").as_str()).await.map_err(storage)?;
        }
        for bookkeeping in [
            format!("CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"),
            format!("CREATE TABLE IF NOT EXISTS {table}_checksums (version BIGINT PRIMARY KEY, sha256 TEXT NOT NULL)"),
        ] {
            tx.execute(bookkeeping.as_str()).await.map_err(storage)?;
        }
        let applied: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut *tx).await.map_err(storage)?;
        let applied = usize::try_from(applied).unwrap_or(0);
        if applied > migrations.len() {
            return Err(RegistryError::Storage(format!(
                "the database has {applied} {table} applied but this nexus knows {}: it was migrated by a newer \
                 version; run that version (or a newer one)",
                migrations.len()
            )));
        }
        check_applied(&mut tx, table, &migrations[..applied]).await?;
        for (index, migration) in migrations.iter().enumerate().skip(applied) {
            sqlx::raw_sql(migration).execute(&mut *tx).await.map_err(storage)?;
            let version = index as i64 + 1;
            sqlx::query(&format!("INSERT INTO {table} (version, applied_at) VALUES ($1, $2)"))
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            sqlx::query(&format!("INSERT INTO {table}_checksums (version, sha256) VALUES ($1, $2)"))
                .bind(version)
                .bind(checksum(migration))
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
        }
        tx.commit().await.map_err(storage)
    }
}

fn checksum(migration: &str) -> String {
    hex::encode(Sha256::digest(migration.as_bytes()))
}

/// Refuses applied migrations whose text has changed since; records the checksums of
/// those applied before checksums were kept, as they are now.
async fn check_applied(tx: &mut sqlx::AnyConnection, table: &str, applied: &[&str]) -> Result<(), RegistryError> {
    let kept: Vec<(i64, String)> = sqlx::query_as(&format!("SELECT version, sha256 FROM {table}_checksums"))
        .fetch_all(&mut *tx)
        .await
        .map_err(storage)?;
    let kept: std::collections::HashMap<i64, String> = kept.into_iter().collect();
    for (index, migration) in applied.iter().enumerate() {
        let version = index as i64 + 1;
        let shipped = checksum(migration);
        match kept.get(&version) {
            Some(stored) if *stored == shipped => {}
            Some(_) => {
                return Err(RegistryError::Storage(format!(
                    "{table} migration {version} was edited after this database applied it; restore it as \
                     shipped and put the change in a new migration"
                )));
            }
            None => {
                sqlx::query(&format!("INSERT INTO {table}_checksums (version, sha256) VALUES ($1, $2)"))
                    .bind(version)
                    .bind(shipped)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage)?;
            }
        }
    }
    Ok(())
}
