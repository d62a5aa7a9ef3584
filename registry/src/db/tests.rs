use super::positional::unnamed;
use super::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn numbered_parameters_in_order_become_unnamed_and_any_other_statement_stays() {
    let sql = format!("INSERT INTO t (a, b) VALUES {} RETURNING '$9', \"$8\"", "($1, $2), ($3, $4)");
    assert_eq!(unnamed(&sql).as_deref(), Some("INSERT INTO t (a, b) VALUES (?, ?), (?, ?) RETURNING '$9', \"$8\""));
    assert_eq!(unnamed("SELECT 1").as_deref(), Some("SELECT 1"));
    // Out of order, repeated or skipped: numbered is the only correct binding.
    assert_eq!(unnamed("UPDATE t SET a = $2 WHERE b = $1"), None);
    assert_eq!(unnamed("SELECT $1 WHERE $1 = 0"), None);
    assert_eq!(unnamed("SELECT $1, $3"), None);
    // Parameters of another form beside numbered ones: rewriting would shift their positions.
    assert_eq!(unnamed("SELECT $1 WHERE a = ?"), None);
    assert_eq!(unnamed("SELECT ?2, $1"), None);
    assert_eq!(unnamed("SELECT $1 WHERE a = :name OR b = @other"), None);
    // Inside quotes they are text, and PostgreSQL's `::` cast is not a parameter.
    assert_eq!(unnamed("SELECT $1::TEXT, '?', ':x'").as_deref(), Some("SELECT ?::TEXT, '?', ':x'"));
}

#[test]
fn value_rows_number_every_value_once_in_order() {
    assert_eq!(value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
    assert_eq!(value_rows(1, 1), "($1)");
    assert_eq!(value_rows(0, 4), "");
    assert_eq!(unnamed(&format!("VALUES {}", value_rows(2, 2))), Some("VALUES (?, ?), (?, ?)".to_string()));
}

#[test]
fn a_statement_with_thousands_of_values_binds_them_in_order_on_sqlite() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::sqlite_in(dir.path()).await.unwrap();
        let mut conn = db.writer().acquire().await.unwrap();
        sqlx::query("CREATE TABLE t (a BIGINT, b TEXT)").execute(&mut *conn).await.unwrap();
        let rows = value_rows(2_000, 2);
        let sql = backend_of(&conn).positional(format!("INSERT INTO t (a, b) VALUES {rows}"));
        assert!(sql.starts_with("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"), "{}", &sql[..60]);
        let mut insert = sqlx::query(&sql);
        for r in 0..2_000i64 {
            insert = insert.bind(r).bind(format!("row {r}"));
        }
        insert.execute(&mut *conn).await.unwrap();
        let wrong: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM t WHERE b <> 'row ' || a").fetch_one(&mut *conn).await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&mut *conn).await.unwrap();
        assert_eq!((count, wrong), (2_000, 0));
    });
}

#[test]
fn an_edited_or_unknown_migration_is_refused_and_nothing_runs() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::sqlite_in(dir.path()).await.unwrap();
        let first = ["CREATE TABLE a (x BIGINT)", "CREATE TABLE b (x BIGINT)"];
        db.apply_migrations("test_migrations", &first, &first).await.unwrap();
        // The same again, and one more: only the new one runs.
        let more = ["CREATE TABLE a (x BIGINT)", "CREATE TABLE b (x BIGINT)", "CREATE TABLE c (x BIGINT)"];
        db.apply_migrations("test_migrations", &more, &more).await.unwrap();

        let edited = ["CREATE TABLE a (x BIGINT)", "CREATE TABLE b (y BIGINT)", "CREATE TABLE c (x BIGINT)"];
        let refused = db.apply_migrations("test_migrations", &edited, &edited).await.unwrap_err();
        assert!(refused.to_string().contains("test_migrations migration 2 was edited"), "{refused}");

        let older = ["CREATE TABLE a (x BIGINT)"];
        let refused = db.apply_migrations("test_migrations", &older, &older).await.unwrap_err();
        assert!(refused.to_string().contains("migrated by a newer version"), "{refused}");
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM test_migrations").fetch_one(&db.pool).await.unwrap();
        assert_eq!(applied, 3);
    })
}

#[test]
fn commits_waiting_at_once_share_one_fsync_of_the_log() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::sqlite_in(dir.path()).await.unwrap();
        let mode: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(db.writer()).await.unwrap();
        assert_eq!(mode, 1, "the writer commits with synchronous = NORMAL");
        sqlx::query("CREATE TABLE t (n BIGINT)").execute(db.writer()).await.unwrap();
        let wal = db.wal.clone().unwrap();
        // While an fsync is under way (the lock held), 50 requests commit and ask.
        let running = wal.synced.lock().await;
        let mut waiting = tokio::task::JoinSet::new();
        for n in 0..50_i64 {
            let db = db.clone();
            waiting.spawn(async move {
                sqlx::query("INSERT INTO t (n) VALUES ($1)").bind(n).execute(db.writer()).await?;
                db.durable().await
            });
        }
        while wal.issued.load(Ordering::SeqCst) < 50 {
            tokio::task::yield_now().await;
        }
        drop(running);
        while let Some(done) = waiting.join_next().await {
            done.unwrap().unwrap();
        }
        // The first to get the lock synced the log for all 50.
        assert_eq!(wal.syncs.load(Ordering::Relaxed), 1);
        db.durable().await.unwrap();
        assert_eq!(wal.syncs.load(Ordering::Relaxed), 2, "a later commit gets a sync of its own");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&db.pool).await.unwrap();
        assert_eq!(rows, 50);
    })
}
