//! The partner program: a signed-in person applies to become a partner (company, the
//! namespace wanted, website, support address, and acceptance of the current partner
//! agreement); operators see the queue and approve, which creates the publisher with the
//! applicant as its owner, or reject with a reason. The applicant is mailed either way.
//!
//! A namespace can be applied for while no publisher has it and no other application for it
//! is pending (a unique index keeps that true under concurrent applications); a decided
//! application is decided once.

use nexus_registry::{ErrorCode, PublisherName, RegistryError};
use serde::Serialize;
use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::error::MarketError;
use crate::ids::{ApplicationId, PersonId};
use crate::mail::{self, Mail};
use crate::market::Market;
use crate::people::normalized_email;

/// The partner agreement's current version.
pub const AGREEMENT_VERSION: &str = "2026-12";
/// Its text, shown where a person applies (`docs/partner-agreement.md`).
pub const AGREEMENT_TEXT: &str = include_str!("../../../docs/partner-agreement.md");

/// What a person sends to apply.
#[derive(Debug, Clone, Default)]
pub struct Application {
    pub company: String,
    pub namespace: String,
    pub website: String,
    pub support_email: String,
    /// The agreement version the applicant accepted (must be [`AGREEMENT_VERSION`]).
    pub agreement_version: String,
}

/// An application as its applicant and operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Applied {
    pub id: ApplicationId,
    #[sqlx(rename = "person_id")]
    #[schema(value_type = String)]
    pub person: PersonId,
    pub applicant_email: String,
    pub company: String,
    pub namespace: String,
    pub website: String,
    pub support_email: String,
    pub agreement_version: String,
    /// pending, approved or rejected.
    pub state: String,
    pub reason: Option<String>,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

fn invalid(message: impl Into<String>) -> MarketError {
    MarketError::invalid(ErrorCode::InvalidRequest, message)
}

fn taken(namespace: &str) -> MarketError {
    MarketError::conflict(
        ErrorCode::PublisherExists,
        format!("the namespace {namespace} is taken or applied for; choose another"),
    )
}

/// Files `person`'s application; mailed to nobody until it is decided.
pub async fn apply(market: &Market, person: &PersonId, application: Application) -> Result<Applied, MarketError> {
    let company = application.company.trim();
    if company.is_empty() || company.chars().count() > 100 {
        return Err(invalid("the company name has 1 to 100 characters"));
    }
    let namespace: PublisherName = application
        .namespace
        .trim()
        .parse()
        .map_err(|e: nexus_registry::id::NameError| MarketError::invalid(ErrorCode::InvalidId, e.to_string()))?;
    let website = application.website.trim();
    let parsed = reqwest::Url::parse(website).map_err(|_| invalid(format!("`{website}` is not a URL (https://…)")))?;
    if parsed.scheme() != "https" || parsed.host_str().is_none_or(|host| !host.contains('.')) {
        return Err(invalid(format!("the website must be an https:// address with a domain; `{website}` is not")));
    }
    let support = normalized_email(&application.support_email)?;
    if application.agreement_version != AGREEMENT_VERSION {
        return Err(invalid(format!(
            "accept the partner agreement's current version ({AGREEMENT_VERSION}) to apply; `{}` is not it",
            application.agreement_version
        )));
    }
    let now = market.billing.clock.now_ms();
    let id = String::from(ApplicationId::random()?);
    let mut tx = market.db.write_tx().await?;
    let publisher: Option<String> = sqlx::query_scalar("SELECT name FROM publishers WHERE name = $1")
        .bind(namespace.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if publisher.is_some() {
        return Err(taken(namespace.as_str()));
    }
    let inserted = sqlx::query(
        "INSERT INTO partner_applications (id, person_id, company, namespace, website, support_email, \
         agreement_version, state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)",
    )
    .bind(&id)
    .bind(person)
    .bind(company)
    .bind(namespace.as_str())
    .bind(website)
    .bind(&support)
    .bind(AGREEMENT_VERSION)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(error) if nexus_registry::db::is_unique_violation(&error) => return Err(taken(namespace.as_str())),
        other => other?,
    };
    let detail = json!({ "namespace": namespace.as_str(), "agreement_version": AGREEMENT_VERSION });
    audit::record(&mut *tx, &format!("person:{person}"), "partner.applied", &id, detail).await?;
    tx.commit().await?;
    get(market, &id).await
}

const SELECT: &str = "SELECT a.*, p.email AS applicant_email FROM partner_applications a \
                      JOIN people p ON p.id = a.person_id";

async fn get(market: &Market, id: &str) -> Result<Applied, MarketError> {
    sqlx::query_as::<_, Applied>(&format!("{SELECT} WHERE a.id = $1"))
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("application {id}")))
}

/// A person's own applications, newest first.
pub async fn of_person(market: &Market, person: &PersonId) -> Result<Vec<Applied>, MarketError> {
    Ok(sqlx::query_as::<_, Applied>(&format!("{SELECT} WHERE a.person_id = $1 ORDER BY a.created_at DESC, a.id"))
        .bind(person)
        .fetch_all(&market.db.pool)
        .await?)
}

/// The operators' queue: pending applications, oldest first, then the 50 latest decided.
pub async fn queue(market: &Market, caller: &Caller) -> Result<(Vec<Applied>, Vec<Applied>), MarketError> {
    caller.require_operator()?;
    let pending =
        sqlx::query_as::<_, Applied>(&format!("{SELECT} WHERE a.state = 'pending' ORDER BY a.created_at, a.id"))
            .fetch_all(&market.db.pool)
            .await?;
    let decided = sqlx::query_as::<_, Applied>(&format!(
        "{SELECT} WHERE a.state <> 'pending' ORDER BY a.decided_at DESC, a.id LIMIT 50"
    ))
    .fetch_all(&market.db.pool)
    .await?;
    Ok((pending, decided))
}

/// What an operator decides.
#[derive(Debug, Clone)]
pub enum Decision {
    Approve,
    Reject { reason: String },
}

/// Decides a pending application once: approving creates the publisher with the applicant
/// as its owner; either way the applicant is mailed. A second decision is `409`.
pub async fn decide(
    market: &Market,
    caller: &Caller,
    id: &ApplicationId,
    decision: Decision,
) -> Result<Applied, MarketError> {
    caller.require_operator()?;
    if let Decision::Reject { reason } = &decision
        && (reason.trim().is_empty() || reason.chars().count() > 500)
    {
        return Err(invalid("a rejection gives the applicant a reason (1 to 500 characters)"));
    }
    let application = get(market, id.as_str()).await?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let (state, reason) = match &decision {
        Decision::Approve => ("approved", None),
        Decision::Reject { reason } => ("rejected", Some(reason.trim())),
    };
    let decided = sqlx::query(
        "UPDATE partner_applications SET state = $1, reason = $2, decided_by = $3, decided_at = $4 \
         WHERE id = $5 AND state = 'pending'",
    )
    .bind(state)
    .bind(reason)
    .bind(caller.actor())
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if decided.rows_affected() == 0 {
        tx.rollback().await?;
        return Err(MarketError::conflict(
            ErrorCode::ApplicationDecided,
            format!("application {id} was already decided ({})", application.state),
        ));
    }
    let (subject, body) = match &decision {
        Decision::Approve => {
            let namespace: PublisherName = application
                .namespace
                .parse()
                .map_err(|e: nexus_registry::id::NameError| MarketError::Storage(format!("stored namespace: {e}")))?;
            match nexus_registry::publishers::insert_publisher(&mut tx, &namespace, &application.company).await {
                Ok(()) => {}
                Err(RegistryError::PublisherExists(_)) => {
                    tx.rollback().await?;
                    return Err(taken(namespace.as_str()));
                }
                Err(other) => return Err(other.into()),
            }
            make_owner(&mut tx, &application, &namespace, now).await?
        }
        Decision::Reject { reason } => rejection_mail(&application, reason),
    };
    let notice = Mail { kind: "application-decision", to: application.applicant_email.clone(), subject, body };
    mail::enqueue(&mut tx, now, &notice).await?;
    let detail = json!({ "namespace": application.namespace, "reason": reason });
    audit::record(&mut *tx, &caller.actor(), &format!("partner.{state}"), id.as_str(), detail).await?;
    tx.commit().await?;
    market.runner.wake_workers();
    get(market, id.as_str()).await
}

/// Makes the applicant the owner of the publisher just created for `namespace`, with the
/// agreement they accepted, in `tx`: the welcome mail's subject and body.
async fn make_owner(
    tx: &mut sqlx::AnyConnection,
    application: &Applied,
    namespace: &PublisherName,
    now: i64,
) -> Result<(String, String), MarketError> {
    sqlx::query(
        "INSERT INTO memberships (person_id, org_kind, org_id, role, created_at) \
         VALUES ($1, 'publisher', $2, 'owner', $3)",
    )
    .bind(&application.person)
    .bind(namespace.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let accepted_by = format!("person:{}", application.person);
    record_acceptance(tx, namespace.as_str(), &application.agreement_version, &accepted_by, now).await?;
    Ok((
        format!("You are a Nexus partner: {namespace} is yours"),
        format!(
            "Welcome to the partner program.\n\nThe namespace {namespace} is yours and you are the owner of \
             its publisher. Sign in and switch to {namespace} in the console to see your listings, sales \
             and payouts.\n"
        ),
    ))
}

/// The rejection mail's subject and body, with the operator's reason.
fn rejection_mail(application: &Applied, reason: &str) -> (String, String) {
    (
        "Your Nexus partner application".to_string(),
        format!(
            "Your application for the namespace {} was not approved:\n\n{}\n\nYou may apply again once that is \
             addressed.\n",
            application.namespace,
            reason.trim()
        ),
    )
}

/// Notes that `publisher` accepted agreement `version` (once; accepting again changes nothing):
/// whether this call recorded it.
async fn record_acceptance(
    tx: &mut sqlx::AnyConnection,
    publisher: &str,
    version: &str,
    accepted_by: &str,
    now: i64,
) -> Result<bool, MarketError> {
    let inserted = sqlx::query(
        "INSERT INTO partner_agreements (publisher, version, accepted_by, accepted_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (publisher, version) DO NOTHING",
    )
    .bind(publisher)
    .bind(version)
    .bind(accepted_by)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Whether `publisher` joined through the program and has not accepted the current agreement
/// (publishers an operator created by hand have no agreement on record and are never held).
pub async fn agreement_outdated(market: &Market, publisher: &str) -> Result<bool, MarketError> {
    let (accepted, current) = sqlx::query_as::<_, (i64, i64)>(
        "SELECT COUNT(*) AS accepted, \
         COALESCE(SUM(CASE WHEN version = $2 THEN 1 ELSE 0 END), 0) AS current \
         FROM partner_agreements WHERE publisher = $1",
    )
    .bind(publisher)
    .bind(AGREEMENT_VERSION)
    .fetch_one(&market.db.pool)
    .await?;
    Ok(accepted > 0 && current == 0)
}

/// Refuses a publish while [`agreement_outdated`], saying where to accept.
pub async fn require_current_agreement(market: &Market, publisher: &str) -> Result<(), MarketError> {
    if agreement_outdated(market, publisher).await? {
        return Err(MarketError::invalid(
            ErrorCode::AgreementNotAccepted,
            format!(
                "the partner agreement changed (now version {AGREEMENT_VERSION}): an owner or admin of {publisher} \
                 accepts it on the console's Partner program page, then publish again"
            ),
        ));
    }
    Ok(())
}

/// An owner or admin of `publisher` accepts the current agreement for it.
pub async fn accept_agreement(
    market: &Market,
    person: &PersonId,
    publisher: &str,
    version: &str,
) -> Result<(), MarketError> {
    if version != AGREEMENT_VERSION {
        return Err(MarketError::invalid(
            ErrorCode::AgreementNotAccepted,
            format!("version {version} is not the current partner agreement ({AGREEMENT_VERSION}); read it again"),
        ));
    }
    let may = crate::people::memberships(market, person)
        .await?
        .iter()
        .any(|m| m.org_kind == "publisher" && m.org_id == publisher && m.role.manages_members());
    if !may {
        return Err(MarketError::Forbidden(format!("only an owner or admin of {publisher} accepts its agreement")));
    }
    let now = market.billing.clock.now_ms();
    let actor = format!("person:{person}");
    let mut tx = market.db.write_tx().await?;
    // Accepted once, audited once, however many owners accept at the same moment.
    if record_acceptance(&mut tx, publisher, version, &actor, now).await? {
        audit::record(&mut *tx, &actor, "partner.agreement_accepted", publisher, json!({ "version": version })).await?;
    }
    tx.commit().await?;
    Ok(())
}
