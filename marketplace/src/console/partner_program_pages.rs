//! The partner program in the console: a signed-in person's applications and the form to
//! apply; the operators' queue with approve and reject; and the header's switch between a
//! person's organizations (a tenant, and the publisher an approval made them owner of).

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
use crate::partner_program::{self, AGREEMENT_TEXT, AGREEMENT_VERSION, Application, Applied, Decision};
use crate::server::AppState;
use crate::sessions;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/partner-program", get(program).post(apply))
        .route("/console/partner-program/agreement", post(accept_agreement))
        .route("/console/operator/applications", get(queue))
        .route("/console/operator/applications/{id}/{decision}", post(decide))
        .route("/console/switch", post(switch))
}

#[derive(Template)]
#[template(path = "partner_program.html")]
struct ProgramPage {
    chrome: Chrome,
    problem: Option<String>,
    notice: Option<String>,
    applications: Vec<Applied>,
    form: Application,
    /// The person's publishers (as owner or admin) that must accept the current agreement.
    outdated: Vec<String>,
    agreement_version: &'static str,
    agreement: &'static str,
}

#[derive(Debug, Deserialize)]
struct Notice {
    applied: Option<String>,
    accepted: Option<String>,
}

async fn program(
    State(state): State<AppState>,
    signed: Signed,
    Query(query): Query<Notice>,
) -> Result<Response, PageError> {
    let applications = partner_program::of_person(&state.market, signed.person("the partner program")?).await?;
    let notice = match (query.applied, query.accepted) {
        (Some(namespace), _) => Some(format!(
            "Thank you: your application for {namespace} is waiting for an operator. We mail you the decision."
        )),
        (None, Some(publisher)) => {
            Some(format!("{publisher} accepted the partner agreement, version {AGREEMENT_VERSION}: publish away."))
        }
        (None, None) => None,
    };
    page(&state, &signed, StatusCode::OK, None, notice, applications, Application::default()).await
}

/// The person's publishers, as owner or admin, held back by an outdated agreement.
async fn outdated(state: &AppState, signed: &Signed) -> Result<Vec<String>, PageError> {
    let mut outdated = Vec::new();
    for membership in &signed.0.memberships {
        if membership.org_kind == "publisher"
            && membership.role.manages_members()
            && partner_program::agreement_outdated(&state.market, &membership.org_id).await?
        {
            outdated.push(membership.org_id.clone());
        }
    }
    Ok(outdated)
}

async fn page(
    state: &AppState,
    signed: &Signed,
    status: StatusCode,
    problem: Option<String>,
    notice: Option<String>,
    applications: Vec<Applied>,
    form: Application,
) -> Result<Response, PageError> {
    let page = ProgramPage {
        chrome: Chrome::new("Partner program", Some(&signed.0)),
        problem,
        notice,
        applications,
        form,
        outdated: outdated(state, signed).await?,
        agreement_version: AGREEMENT_VERSION,
        agreement: AGREEMENT_TEXT,
    };
    Ok((status, render(&page)?).into_response())
}

async fn apply(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let person = signed.person("the partner program")?;
    let field = |name: &str| fields.get(name).unwrap_or_default().to_string();
    let application = Application {
        company: field("company"),
        namespace: field("namespace"),
        website: field("website"),
        support_email: field("support_email"),
        agreement_version: field("agreement_version"),
    };
    match partner_program::apply(&state.market, person, application.clone()).await {
        Ok(applied) => {
            Ok(Redirect::to(&format!("/console/partner-program?applied={}", applied.namespace)).into_response())
        }
        Err(refused) => {
            let refused = PageError::refusal(refused)?;
            let applications = partner_program::of_person(&state.market, person).await?;
            page(&state, &signed, refused.status, Some(refused.message), None, applications, application).await
        }
    }
}

/// An owner or admin accepts the current agreement for one of their publishers.
async fn accept_agreement(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let person = signed.person("the partner program")?;
    let publisher = fields.get("publisher").unwrap_or_default();
    let version = fields.get("agreement_version").unwrap_or_default();
    partner_program::accept_agreement(&state.market, person, publisher, version).await?;
    Ok(Redirect::to(&format!("/console/partner-program?accepted={publisher}")).into_response())
}

#[derive(Template)]
#[template(path = "applications.html")]
struct QueuePage {
    chrome: Chrome,
    notice: Option<String>,
    pending: Vec<Applied>,
    decided: Vec<Applied>,
}

#[derive(Debug, Deserialize)]
struct Decided {
    decided: Option<String>,
}

async fn queue(
    State(state): State<AppState>,
    signed: Signed,
    Query(query): Query<Decided>,
) -> Result<Response, PageError> {
    let (pending, decided) = partner_program::queue(&state.market, &signed.0.caller).await?;
    let page = QueuePage {
        chrome: Chrome::new("Partner applications", Some(&signed.0)),
        notice: query.decided.map(|what| format!("Done: {what}. The applicant is mailed.")),
        pending,
        decided,
    };
    render(&page)
}

async fn decide(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, decision)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let decision = match decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject { reason: fields.get("reason").unwrap_or_default().to_string() },
        other => {
            return Err(PageError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("no decision {other}")));
        }
    };
    // Only operators learn whether an application exists, a malformed id included.
    signed.0.caller.require_operator()?;
    let decided = partner_program::decide(&state.market, &signed.0.caller, &id.parse()?, decision).await?;
    let what = format!("{} {}", decided.namespace, decided.state);
    Ok(Redirect::to(&format!("/console/operator/applications?decided={}", what.replace(' ', "+"))).into_response())
}

async fn switch(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let person = signed.person("the partner program")?;
    let Some((kind, id)) = fields.get("org").and_then(|org| org.split_once(':')) else {
        return Err(PageError::bad_request(ErrorCode::InvalidRequest, "choose an organization to act as"));
    };
    let cookie = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    sessions::switch(&state.market, cookie, person, kind, id).await?;
    let home = match kind {
        "publisher" => format!("/console/partners/{id}"),
        _ => "/console/installs".to_string(),
    };
    Ok(Redirect::to(&home).into_response())
}
