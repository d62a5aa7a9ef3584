//! Tenants as operators create and list them.

use nexus_registry::publishers::Issuer;
use nexus_registry::{Db, ErrorCode, db::now_ms};
use serde::Serialize;

use super::{IssuedAccountToken, TenantId, TenantScope, issue_tenant_token};
use crate::error::MarketError;

/// A tenant as listed to operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub display_name: String,
    pub created_at: i64,
}

/// Creates a tenant and its first token, with every scope.
pub async fn create_tenant(
    db: &Db,
    id: &TenantId,
    display_name: &str,
    created_by: &str,
) -> Result<IssuedAccountToken, MarketError> {
    if display_name.trim().is_empty() || display_name.len() > 100 {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "display_name must be 1 to 100 characters"));
    }
    let inserted = sqlx::query("INSERT INTO tenants (id, display_name, created_at) VALUES ($1, $2, $3)")
        .bind(id.as_str())
        .bind(display_name)
        .bind(now_ms())
        .execute(db.writer())
        .await;
    match inserted {
        Err(error) if nexus_registry::db::is_unique_violation(&error) => {
            return Err(MarketError::conflict(ErrorCode::TenantExists, format!("tenant {id} already exists")));
        }
        other => other?,
    };
    issue_tenant_token(db, id, TenantScope::ALL.into_iter().collect(), "initial", None, &Issuer::by(created_by)).await
}

pub async fn tenant_exists(db: &Db, id: &TenantId) -> Result<bool, MarketError> {
    let found = sqlx::query("SELECT 1 FROM tenants WHERE id = $1").bind(id.as_str()).fetch_optional(&db.pool).await?;
    Ok(found.is_some())
}

pub async fn list_tenants(db: &Db, query: &crate::error::PageQuery) -> Result<crate::error::Page<Tenant>, MarketError> {
    let (page, per_page) = query.checked()?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants").fetch_one(&db.pool).await?;
    let items =
        sqlx::query_as::<_, Tenant>("SELECT id, display_name, created_at FROM tenants ORDER BY id LIMIT $1 OFFSET $2")
            .bind(i64::from(per_page))
            .bind(i64::from(page - 1) * i64::from(per_page))
            .fetch_all(&db.pool)
            .await?;
    Ok(crate::error::Page::new(items, page, per_page, total))
}
