//! The members of the organization a person's session acts as: the list with roles,
//! pending invitations, inviting, changing a role, removing, leaving; and accepting an
//! invitation from its mailed link.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use nexus_registry::ErrorCode;
use serde::Deserialize;

use super::session::{SESSION_COOKIE, Signed, cookie};
use super::{Chrome, Fields, PageError, render};
use crate::accounts::Caller;
use crate::error::MarketError;
use crate::ids::PersonId;
use crate::organizations::{self, Invited, Member, Org};
use crate::people::Role;
use crate::server::AppState;
use crate::sessions;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/organization", get(page))
        .route("/console/organization/invite", post(invite))
        .route("/console/organization/members/{person}/{change}", post(change))
        .route("/console/invitations/{link}", get(invitation).post(accept))
}

/// The person and the organization the session acts as.
fn acting(signed: &Signed) -> Result<(&PersonId, Org<'_>), PageError> {
    let person = signed.person("managing members")?;
    let org = match &signed.0.caller {
        Caller::Tenant { tenant, .. } => Org { kind: "tenant", id: tenant.as_str() },
        Caller::Publisher(credential) => Org { kind: "publisher", id: credential.publisher.as_str() },
        Caller::Operator { .. } => {
            return Err(PageError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, "operators have no members page"));
        }
    };
    Ok((person, org))
}

#[derive(Template)]
#[template(path = "organization.html")]
struct OrganizationPage<'a> {
    chrome: Chrome,
    problem: Option<String>,
    notice: Option<String>,
    me: PersonId,
    org_id: &'a str,
    manages: bool,
    members: Vec<Member>,
    invited: Vec<Invited>,
    roles: Vec<&'static str>,
}

#[derive(Debug, Deserialize)]
struct Done {
    done: Option<String>,
}

async fn page(State(state): State<AppState>, signed: Signed, Query(done): Query<Done>) -> Result<Response, PageError> {
    show(&state, &signed, StatusCode::OK, None, done.done).await
}

async fn show(
    state: &AppState,
    signed: &Signed,
    status: StatusCode,
    problem: Option<String>,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let (me, org) = acting(signed)?;
    let (members, invited) = organizations::members(&state.market, org, me).await?;
    let manages = members.iter().any(|m| &m.person == me && m.role.manages_members());
    let page = OrganizationPage {
        chrome: Chrome::new(format!("Members of {}", org.id), Some(&signed.0)),
        problem,
        notice,
        me: me.clone(),
        org_id: org.id,
        manages,
        members,
        invited,
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
    };
    Ok((status, render(&page)?).into_response())
}

/// Shows the page again with what was refused, or the error page for a server failure.
async fn refused(state: &AppState, signed: &Signed, error: crate::MarketError) -> Result<Response, PageError> {
    let error = PageError::refusal(error)?;
    show(state, signed, error.status, Some(error.message), None).await
}

async fn invite(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let (me, org) = acting(&signed)?;
    let email = fields.get("email").unwrap_or_default();
    let role = fields.get("role").unwrap_or_default();
    match organizations::invite(&state.market, &state.public_url, org, me, email, role).await {
        Ok(_) => Ok(Redirect::to("/console/organization?done=invitation+sent").into_response()),
        Err(error) => refused(&state, &signed, error).await,
    }
}

async fn change(
    State(state): State<AppState>,
    signed: Signed,
    Path((person, change)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let (me, org) = acting(&signed)?;
    // A malformed id is refused on the page like an unknown member.
    let member = || person.parse::<PersonId>().map_err(|_| MarketError::NotFound(format!("member {person}")));
    let (done, outcome) = match change.as_str() {
        "role" => {
            let role = fields.get("role").unwrap_or_default();
            let changed = async { organizations::change_role(&state.market, org, me, &member()?, role).await };
            ("role+changed", changed.await)
        }
        "remove" => ("removed", async { organizations::remove(&state.market, org, me, &member()?).await }.await),
        other => {
            return Err(PageError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("no change {other}")));
        }
    };
    match outcome {
        // Having left, the person no longer sees the page: to their next organization.
        Ok(()) if *me == *person && change == "remove" => Ok(Redirect::to("/console/installs").into_response()),
        Ok(()) => Ok(Redirect::to(&format!("/console/organization?done={done}")).into_response()),
        Err(error) => refused(&state, &signed, error).await,
    }
}

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage {
    chrome: Chrome,
    signed_in: bool,
    link: String,
}

async fn invitation(
    State(_state): State<AppState>,
    signed: Option<Signed>,
    Path(link): Path<String>,
) -> Result<Response, PageError> {
    let session = signed.as_ref().filter(|s| s.0.person.is_some()).map(|s| &s.0);
    render(&InvitationPage { chrome: Chrome::new("An invitation", session), signed_in: session.is_some(), link })
}

async fn accept(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(link): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    signed.check(&Fields(fields))?;
    let Some(person) = signed.0.person.as_ref() else {
        return Err(PageError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, "sign in as the invited person"));
    };
    let joined = organizations::accept(&state.market, &link, person).await?;
    // The session acts as the organization just joined.
    let cookie = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    sessions::switch(&state.market, cookie, person, &joined.org_kind, &joined.org_id).await?;
    let home = match joined.org_kind.as_str() {
        "publisher" => format!("/console/partners/{}", joined.org_id),
        _ => "/console/installs".to_string(),
    };
    Ok(Redirect::to(&home).into_response())
}
