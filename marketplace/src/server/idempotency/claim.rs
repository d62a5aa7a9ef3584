//! Claiming a key: the row written at the start of each write transaction the request
//! begins, so it commits exactly with the request's effect; and the location the effect
//! notes, from which a lost answer is rebuilt.

use nexus_registry::db::{HookFuture, WriteHook, now_ms};

use super::Keyed;

impl WriteHook for Keyed {
    fn on_begin<'a>(&'a self, tx: &'a mut sqlx::AnyConnection) -> HookFuture<'a> {
        Box::pin(async move {
            // `DO NOTHING`, not a failing insert: a failed statement would end a PostgreSQL
            // transaction. Another node's uncommitted row makes this wait for its outcome.
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (caller, key, request_sha256, status, created_at, request_id) \
                 VALUES ($1, $2, $3, 0, $4, $5) ON CONFLICT (caller, key) DO NOTHING",
            )
            .bind(&self.caller)
            .bind(&self.key)
            .bind(&self.fingerprint)
            .bind(now_ms())
            .bind(&self.request_id)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            let owner: Option<String> =
                sqlx::query_scalar("SELECT request_id FROM idempotency_keys WHERE caller = $1 AND key = $2")
                    .bind(&self.caller)
                    .bind(&self.key)
                    .fetch_one(&mut *tx)
                    .await?;
            if owner.as_deref() == Some(self.request_id.as_str()) {
                Ok(())
            } else {
                // Another request with this key took effect first: this one must not.
                Err(sqlx::Error::Protocol("the Idempotency-Key was taken by another request".into()))
            }
        })
    }

    fn on_location<'a>(&'a self, tx: &'a mut sqlx::AnyConnection, location: &'a str) -> HookFuture<'a> {
        Box::pin(async move {
            sqlx::query("UPDATE idempotency_keys SET location = $1 WHERE caller = $2 AND key = $3 AND request_id = $4")
                .bind(location)
                .bind(&self.caller)
                .bind(&self.key)
                .bind(&self.request_id)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }
}
