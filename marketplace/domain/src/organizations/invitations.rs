//! Invitations: mailed to an address with a role (valid 7 days, one use), replacing any
//! pending one, and accepted by the signed-in person whose confirmed address they name.

use nexus_registry::ErrorCode;
use nexus_registry::publishers::{random_hex, secret_hash};
use serde_json::json;

use super::{INVITATION_MS, Invited, Org, forbidden, in_write_tx, lock_members, only_operator_roles, role_of};
use crate::audit;
use crate::error::MarketError;
use crate::ids::{InvitationId, PersonId};
use crate::mail::{self, Mail};
use crate::market::Market;
use crate::people::{Membership, Role, normalized_email};

/// Mails an invitation to `email` to join `org` as `role`; `base` is the console's URL.
pub async fn invite(
    market: &Market,
    base: &str,
    org: Org<'_>,
    inviter: &PersonId,
    email: &str,
    role: &str,
) -> Result<Invited, MarketError> {
    let email = normalized_email(email)?;
    let role = Role::named(role)?;
    only_operator_roles(org, role)?;
    let now = market.billing.clock.now_ms();
    let invited = in_write_tx(market, async |tx| {
        lock_members(market, tx, org).await?;
        may_invite(tx, org, inviter, role, &email).await?;
        let (invited, secret) = replace_invitation(tx, org, inviter, &email, role, now).await?;
        mail::enqueue(tx, now, &invitation_mail(base, org, &email, role, &secret)).await?;
        let detail = json!({ "org": org.label(), "email": email, "role": role.as_str() });
        audit::record(&mut *tx, &format!("person:{inviter}"), "member.invited", invited.id.as_str(), detail).await?;
        Ok(invited)
    })
    .await?;
    market.runner.wake_workers();
    Ok(invited)
}

/// Whether `inviter` may invite `email` to `org` as `role`: owners and admins invite, only
/// owners invite owners, and members are not invited again.
async fn may_invite(
    tx: &mut sqlx::AnyConnection,
    org: Org<'_>,
    inviter: &PersonId,
    role: Role,
    email: &str,
) -> Result<(), MarketError> {
    let mine = role_of(tx, org, inviter).await?;
    if !mine.manages_members() {
        return Err(forbidden("only owners and admins invite people"));
    }
    if role == Role::Owner && mine != Role::Owner {
        return Err(forbidden("only an owner invites another owner"));
    }
    let member: Option<PersonId> = sqlx::query_scalar(
        "SELECT m.person_id FROM memberships m JOIN people p ON p.id = m.person_id \
         WHERE m.org_kind = $1 AND m.org_id = $2 AND p.email = $3",
    )
    .bind(org.kind)
    .bind(org.id)
    .bind(email)
    .fetch_optional(&mut *tx)
    .await?;
    if member.is_some() {
        return Err(MarketError::conflict(ErrorCode::AlreadyMember, format!("{email} is already a member")));
    }
    Ok(())
}

/// Writes a new invitation of `email` in place of any pending one: the invitation and its
/// secret, which goes only into the mail.
async fn replace_invitation(
    tx: &mut sqlx::AnyConnection,
    org: Org<'_>,
    inviter: &PersonId,
    email: &str,
    role: Role,
    now: i64,
) -> Result<(Invited, String), MarketError> {
    sqlx::query(
        "UPDATE invitations SET outcome = 'replaced', ended_at = $1 \
         WHERE org_kind = $2 AND org_id = $3 AND email = $4 AND outcome IS NULL",
    )
    .bind(now)
    .bind(org.kind)
    .bind(org.id)
    .bind(email)
    .execute(&mut *tx)
    .await?;
    let id = InvitationId::random()?;
    let secret = random_hex(24)?;
    let expires_at = now + INVITATION_MS;
    sqlx::query(
        "INSERT INTO invitations (id, secret_sha256, org_kind, org_id, email, role, invited_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(secret_hash(&secret))
    .bind(org.kind)
    .bind(org.id)
    .bind(email)
    .bind(role.as_str())
    .bind(inviter)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    Ok((Invited { id, email: email.to_string(), role, expires_at }, secret))
}

fn invitation_mail(base: &str, org: Org<'_>, email: &str, role: Role, secret: &str) -> Mail {
    Mail {
        kind: "invitation",
        to: email.to_string(),
        subject: format!("You are invited to {} on Nexus", org.id),
        body: format!(
            "Hello,\n\nYou are invited to join {} as {} on Nexus. Sign in (or create an account) with {email}, then \
             open:\n\n{base}/console/invitations/{secret}\n\nThe invitation works once, for 7 days.\n",
            org.label(),
            role.as_str()
        ),
    }
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: String,
    org_kind: String,
    org_id: String,
    email: String,
    role: String,
}

/// Accepts an invitation as `person` (whose confirmed address it must name): the
/// membership it grants.
pub async fn accept(market: &Market, secret: &str, person: &PersonId) -> Result<Membership, MarketError> {
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let row = sqlx::query_as::<_, InvitationRow>(&format!(
        "SELECT id, org_kind, org_id, email, role FROM invitations \
         WHERE secret_sha256 = $1 AND outcome IS NULL AND expires_at > $2{}",
        market.db.for_update()
    ))
    .bind(secret_hash(secret.trim()))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Err(MarketError::invalid(
            ErrorCode::InvalidLink,
            "this invitation is unknown, was already used, replaced or has expired; ask for a new one",
        ));
    };
    let email = row.email;
    let mine: String =
        sqlx::query_scalar("SELECT email FROM people WHERE id = $1").bind(person).fetch_one(&mut *tx).await?;
    if mine != email {
        tx.rollback().await?;
        return Err(forbidden(format!(
            "this invitation is for {email}; you are signed in as {mine}: sign in with {email} to accept it"
        )));
    }
    let id = row.id;
    let membership = Membership { org_kind: row.org_kind, org_id: row.org_id, role: Role::stored(&row.role)? };
    sqlx::query("UPDATE invitations SET outcome = 'accepted', ended_at = $1 WHERE id = $2")
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let joined = sqlx::query(
        "INSERT INTO memberships (person_id, org_kind, org_id, role, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(person)
    .bind(&membership.org_kind)
    .bind(&membership.org_id)
    .bind(membership.role.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await;
    match joined {
        Err(error) if nexus_registry::db::is_unique_violation(&error) => {
            return Err(MarketError::conflict(ErrorCode::AlreadyMember, "you are already a member"));
        }
        other => other?,
    };
    let detail =
        json!({ "org": format!("{} {}", membership.org_kind, membership.org_id), "role": membership.role.as_str() });
    audit::record(&mut *tx, &format!("person:{person}"), "member.joined", &id, detail).await?;
    tx.commit().await?;
    Ok(membership)
}
