//! The audit log: security- and money-relevant actions (accounts, tokens, keys, publishing,
//! catalog moderation, installs, consents, secrets changed, pauses), append-only, readable
//! by operators. Entries name the actor and the target, never a secret value.

use nexus_registry::db::now_ms;
use nexus_registry::{Db, ErrorCode};
use serde::Serialize;
use serde_json::Value;

use nexus_registry::text::MAX_QUERY_CHARS;

use crate::error::{CursorPage, MarketError};

/// Who did it when the platform itself acted (an automatic upgrade, a circuit breaker).
pub const SYSTEM: &str = "system";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    /// The email address of the person behind the actor: the person signed in, the person a
    /// token was issued to, or the person who created the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// For an actor that is a token: the audit name of whoever created the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_created_by: Option<String>,
}

/// Appends an entry. `executor` is the pool or the transaction of the action itself, so
/// the entry and the change commit together.
pub async fn record<'e, E>(
    executor: E,
    actor: &str,
    action: &str,
    target: &str,
    detail: Value,
) -> Result<(), MarketError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail.to_string())
        .execute(executor)
        .await?;
    Ok(())
}

/// Filters for reading the log; every field narrows.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Exact action, such as `install.created`.
    pub action: Option<String>,
    /// Actor prefix, such as `tenant:globex`.
    pub actor: Option<String>,
    /// Exact target, such as an install id.
    pub target: Option<String>,
    /// Entries at or after this instant (milliseconds since the epoch).
    pub from: Option<i64>,
    /// Entries before this instant (milliseconds since the epoch).
    pub to: Option<i64>,
    /// Continue after this entry (a page's `next_after`); newest first.
    pub after: Option<i64>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// `text` as a LIKE pattern that matches only itself (with a backslash as the escape character).
pub(crate) fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

pub async fn list(db: &Db, query: &AuditQuery) -> Result<CursorPage<AuditEntry>, MarketError> {
    let per_page = crate::error::per_page(query.per_page, 50)?;
    for (field, value) in [("action", &query.action), ("actor", &query.actor), ("target", &query.target)] {
        MarketError::check_text(ErrorCode::InvalidQuery, field, value.as_deref().unwrap_or_default(), MAX_QUERY_CHARS)?;
    }
    // The actor is a prefix: its own `%`, `_` and `\` match only themselves.
    let filter = "WHERE ($1 IS NULL OR action = $1) AND ($2 IS NULL OR actor LIKE $2 ESCAPE '\\') \
                  AND ($3 IS NULL OR target = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5)";
    let actor = query.actor.as_ref().map(|a| format!("{}%", like_literal(a)));
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM audit_log {filter}"))
        .bind(query.action.as_deref())
        .bind(actor.as_deref())
        .bind(query.target.as_deref())
        .bind(query.from)
        .bind(query.to)
        .fetch_one(&db.pool)
        .await?;
    let rows = sqlx::query_as::<_, AuditRow>(&format!(
        "SELECT id, at, actor, action, target, detail FROM audit_log {filter} AND id < $6 ORDER BY id DESC LIMIT $7"
    ))
    .bind(query.action.as_deref())
    .bind(actor.as_deref())
    .bind(query.target.as_deref())
    .bind(query.from)
    .bind(query.to)
    .bind(query.after.unwrap_or(i64::MAX))
    .bind(i64::from(per_page) + 1)
    .fetch_all(&db.pool)
    .await?;
    let mut items: Vec<AuditEntry> = rows
        .into_iter()
        .map(|row| AuditEntry {
            id: row.id,
            at: row.at,
            actor: row.actor,
            action: row.action,
            target: row.target,
            detail: serde_json::from_str(&row.detail).unwrap_or(Value::String(row.detail)),
            person: None,
            token_created_by: None,
        })
        .collect();
    name_people(db, &mut items).await?;
    Ok(CursorPage::new(items, per_page, total, |entry| entry.id.to_string()))
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    detail: String,
}

/// The last part of an actor (`tenant:globex:tok_…` → `tok_…`): a token's or a person's id.
fn actor_id(actor: &str) -> &str {
    actor.rsplit(':').next().unwrap_or(actor)
}

/// Fills in who is behind each entry's actor: a person (`usr_…`) by their address; a token
/// (`tok_…`) by its creator and the person it was issued to or made by. Tokens are never
/// deleted (revoking keeps the row), so old entries resolve too.
async fn name_people(db: &Db, entries: &mut [AuditEntry]) -> Result<(), MarketError> {
    let mut emails: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
    for entry in entries.iter_mut() {
        let id = actor_id(&entry.actor).to_string();
        let mut person = id.starts_with("usr_").then(|| id.clone());
        if id.starts_with("tok_") {
            let row = sqlx::query_as::<_, (Option<String>, Option<String>)>(
                "SELECT created_by, person_id FROM account_tokens WHERE id = $1 \
                 UNION ALL SELECT created_by, person_id FROM publisher_tokens WHERE id = $1",
            )
            .bind(&id)
            .fetch_optional(&db.pool)
            .await?;
            if let Some((created_by, issued_to)) = row {
                let maker = created_by.as_deref().map(actor_id).filter(|id| id.starts_with("usr_"));
                person = issued_to.or(maker.map(str::to_string));
                entry.token_created_by = created_by;
            }
        }
        if let Some(person) = person {
            if !emails.contains_key(&person) {
                let email: Option<String> = sqlx::query_scalar("SELECT email FROM people WHERE id = $1")
                    .bind(&person)
                    .fetch_optional(&db.pool)
                    .await?;
                emails.insert(person.clone(), email);
            }
            entry.person = emails.get(&person).cloned().flatten();
        }
    }
    Ok(())
}
