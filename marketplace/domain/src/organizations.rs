//! An organization's people: its members and their roles, invitations by email, role
//! changes, removal and leaving. A tenant and a publisher are organizations alike.
//!
//! - Owners and admins manage members; only an owner makes or unmakes an owner, or removes
//!   one. Anyone may leave. An organization keeps at least one owner (`409 last_owner`), so
//!   ownership passes by making another member owner, then stepping down or leaving.
//! - An invitation is mailed to an address with a role (valid 7 days, one use); it is
//!   accepted by the signed-in person whose confirmed address it names. Inviting an address
//!   again replaces the pending invitation.
//! - Every change runs with the organization's member rows locked (`FOR UPDATE` on
//!   PostgreSQL; SQLite's one writer), so two changes at once cannot both pass the
//!   last-owner check.

mod invitations;

use nexus_registry::ErrorCode;
use serde_json::json;

pub use invitations::{accept, invite};

use crate::audit;
use crate::error::MarketError;
use crate::ids::{InvitationId, PersonId};
use crate::market::Market;
use crate::people::Role;

/// How long an invitation works.
pub const INVITATION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// One member as the organization's page lists them.
#[derive(Debug, Clone)]
pub struct Member {
    pub person: PersonId,
    pub email: String,
    pub name: String,
    pub role: Role,
}

/// A pending invitation.
#[derive(Debug, Clone)]
pub struct Invited {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    pub expires_at: i64,
}

/// An organization: its kind (`tenant`, `publisher`) and id.
#[derive(Debug, Clone, Copy)]
pub struct Org<'a> {
    pub kind: &'a str,
    pub id: &'a str,
}

impl Org<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.kind, self.id)
    }
}

/// `person`'s membership of `org`, or `404` (non-members learn nothing of it).
async fn role_of(conn: &mut sqlx::AnyConnection, org: Org<'_>, person: &PersonId) -> Result<Role, MarketError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE org_kind = $1 AND org_id = $2 AND person_id = $3")
            .bind(org.kind)
            .bind(org.id)
            .bind(person)
            .fetch_optional(&mut *conn)
            .await?;
    Role::stored(&role.ok_or_else(|| MarketError::NotFound(format!("your membership of {}", org.label())))?)
}

/// The operators' organization has owners and admins only: every operator may do everything
/// an operator does, so a narrower role there would promise what it does not keep.
fn only_operator_roles(org: Org<'_>, role: Role) -> Result<(), MarketError> {
    if org.kind == "operator" && !role.manages_members() {
        return Err(MarketError::invalid(
            ErrorCode::InvalidRequest,
            format!("the operators have owners and admins only, not {}", role.as_str()),
        ));
    }
    Ok(())
}

fn forbidden(message: impl Into<String>) -> MarketError {
    MarketError::Forbidden(message.into())
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    person_id: PersonId,
    role: String,
    email: String,
    display_name: String,
}

/// The members and pending invitations of `org`, for one of its members.
pub async fn members(
    market: &Market,
    org: Org<'_>,
    viewer: &PersonId,
) -> Result<(Vec<Member>, Vec<Invited>), MarketError> {
    let mut conn = market.db.pool.acquire().await?;
    role_of(&mut conn, org, viewer).await?;
    let rows = sqlx::query_as::<_, MemberRow>(
        "SELECT m.person_id, m.role, p.email, p.display_name FROM memberships m JOIN people p ON p.id = m.person_id \
         WHERE m.org_kind = $1 AND m.org_id = $2 ORDER BY m.created_at, p.email",
    )
    .bind(org.kind)
    .bind(org.id)
    .fetch_all(&mut *conn)
    .await?;
    let members = rows
        .into_iter()
        .map(|r| Ok(Member { person: r.person_id, email: r.email, name: r.display_name, role: Role::stored(&r.role)? }))
        .collect::<Result<Vec<_>, MarketError>>()?;
    let now = market.billing.clock.now_ms();
    let rows = sqlx::query_as::<_, (InvitationId, String, String, i64)>(
        "SELECT id, email, role, expires_at FROM invitations \
         WHERE org_kind = $1 AND org_id = $2 AND outcome IS NULL AND expires_at > $3 ORDER BY created_at",
    )
    .bind(org.kind)
    .bind(org.id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let invited = rows
        .into_iter()
        .map(|(id, email, role, expires_at)| Ok(Invited { id, email, role: Role::stored(&role)?, expires_at }))
        .collect::<Result<Vec<_>, MarketError>>()?;
    Ok((members, invited))
}

/// Runs `work` in a write transaction: committed when it succeeds, rolled back before its
/// error is returned otherwise, so the rows it locked are free when the caller hears.
async fn in_write_tx<T>(
    market: &Market,
    work: impl AsyncFnOnce(&mut sqlx::AnyConnection) -> Result<T, MarketError>,
) -> Result<T, MarketError> {
    let mut tx = market.db.write_tx().await?;
    match work(&mut tx).await {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            tx.rollback().await?;
            Err(error)
        }
    }
}

/// Locks `org`'s member rows in `tx` (PostgreSQL; SQLite's writer already excludes others).
async fn lock_members(market: &Market, tx: &mut sqlx::AnyConnection, org: Org<'_>) -> Result<(), MarketError> {
    sqlx::query(&format!(
        "SELECT person_id FROM memberships WHERE org_kind = $1 AND org_id = $2{}",
        market.db.for_update()
    ))
    .bind(org.kind)
    .bind(org.id)
    .fetch_all(&mut *tx)
    .await?;
    Ok(())
}

async fn owners(tx: &mut sqlx::AnyConnection, org: Org<'_>) -> Result<i64, MarketError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_kind = $1 AND org_id = $2 AND role = 'owner'")
        .bind(org.kind)
        .bind(org.id)
        .fetch_one(&mut *tx)
        .await?)
}

/// Changes `member`'s role in `org`, as `actor`.
pub async fn change_role(
    market: &Market,
    org: Org<'_>,
    actor: &PersonId,
    member: &PersonId,
    role: &str,
) -> Result<(), MarketError> {
    let role = Role::named(role)?;
    only_operator_roles(org, role)?;
    in_write_tx(market, async |tx| {
        lock_members(market, tx, org).await?;
        let mine = role_of(tx, org, actor).await?;
        let theirs = role_of(tx, org, member).await.map_err(|_| MarketError::NotFound(format!("member {member}")))?;
        if !mine.manages_members() {
            return Err(forbidden("only owners and admins change roles"));
        }
        if (role == Role::Owner || theirs == Role::Owner) && mine != Role::Owner {
            return Err(forbidden("only an owner makes or unmakes an owner"));
        }
        if theirs == Role::Owner && role != Role::Owner && owners(tx, org).await? <= 1 {
            return Err(last_owner());
        }
        sqlx::query("UPDATE memberships SET role = $1 WHERE org_kind = $2 AND org_id = $3 AND person_id = $4")
            .bind(role.as_str())
            .bind(org.kind)
            .bind(org.id)
            .bind(member)
            .execute(&mut *tx)
            .await?;
        // Their tokens carry the old role's scopes.
        crate::people::login::revoke_of_person(tx, member, Some((org.kind, org.id))).await?;
        let detail = json!({ "org": org.label(), "member": member, "from": theirs.as_str(), "to": role.as_str() });
        audit::record(&mut *tx, &format!("person:{actor}"), "member.role_changed", member.as_str(), detail).await
    })
    .await
}

fn last_owner() -> MarketError {
    MarketError::conflict(
        ErrorCode::LastOwner,
        "an organization keeps at least one owner: make another member owner first",
    )
}

/// Removes `member` from `org` (`actor` removing themself is leaving).
pub async fn remove(market: &Market, org: Org<'_>, actor: &PersonId, member: &PersonId) -> Result<(), MarketError> {
    in_write_tx(market, async |tx| {
        lock_members(market, tx, org).await?;
        let mine = role_of(tx, org, actor).await?;
        let theirs = role_of(tx, org, member).await.map_err(|_| MarketError::NotFound(format!("member {member}")))?;
        if actor != member {
            if !mine.manages_members() {
                return Err(forbidden("only owners and admins remove members"));
            }
            if theirs == Role::Owner && mine != Role::Owner {
                return Err(forbidden("only an owner removes an owner"));
            }
        }
        if theirs == Role::Owner && owners(tx, org).await? <= 1 {
            return Err(last_owner());
        }
        sqlx::query("DELETE FROM memberships WHERE org_kind = $1 AND org_id = $2 AND person_id = $3")
            .bind(org.kind)
            .bind(org.id)
            .bind(member)
            .execute(&mut *tx)
            .await?;
        crate::people::login::revoke_of_person(tx, member, Some((org.kind, org.id))).await?;
        let action = if actor == member { "member.left" } else { "member.removed" };
        let detail = json!({ "org": org.label() });
        audit::record(&mut *tx, &format!("person:{actor}"), action, member.as_str(), detail).await
    })
    .await
}
