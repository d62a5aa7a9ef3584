//! People's flows as JSON, beside the console's forms: sign up, confirm the address, reset a
//! password, read the partner agreement, apply to the partner program (with a token a person
//! signed in for), and the operators' queue and decisions. Answers never say whether an
//! address is registered.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::extract::JsonBody;
use super::{ApiError, AppState};
use crate::accounts::Caller;
use crate::ids::PersonId;
use crate::partner_program::{self, AGREEMENT_TEXT, AGREEMENT_VERSION, Application, Applied, Decision};
use crate::people::{self, login};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(confirm_address))
        .routes(routes!(request_reset))
        .routes(routes!(reset_password))
        .routes(routes!(show_agreement))
        .routes(routes!(list_applications, apply))
        .routes(routes!(decide_application))
}

/// What a sign-up or a reset request is answered, registered address or not.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Mailed {
    message: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpBody {
    email: String,
    name: String,
    password: String,
    /// The id of the tenant organization created with you as its owner.
    organization: String,
    organization_name: String,
}

/// Creates an account and its tenant organization, and mails a link that confirms the
/// address (24 h). An address already registered is answered the same (its owner is mailed).
#[utoipa::path(post, path = "/v1/signup", tag = "people", request_body = SignUpBody, security(()),
    responses((status = 202, body = Mailed)))]
pub async fn sign_up(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SignUpBody>,
) -> Result<(StatusCode, Json<Mailed>), ApiError> {
    let email = people::normalized_email(&body.email)?;
    let request = people::SignUp {
        email: email.clone(),
        password: body.password,
        display_name: body.name,
        tenant: body.organization,
        tenant_name: body.organization_name,
    };
    people::sign_up(&state.market, &state.public_url, request).await?;
    let message = format!("We mailed a link to {email}: open it to confirm the address, then sign in.");
    Ok((StatusCode::ACCEPTED, Json(Mailed { message })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// The secret part of the mailed link.
    link: String,
}

/// Confirms an address with its mailed link (once, while it is valid).
#[utoipa::path(post, path = "/v1/signup/confirm", tag = "people", request_body = LinkBody, security(()),
    responses((status = 204)))]
pub async fn confirm_address(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<LinkBody>,
) -> Result<StatusCode, ApiError> {
    people::verify_email(&state.market, &body.link).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
}

/// Mails a link (1 h, one use) to choose a new password, if the address is registered;
/// answered the same either way.
#[utoipa::path(post, path = "/v1/password-resets", tag = "people", request_body = ResetRequest, security(()),
    responses((status = 202, body = Mailed)))]
pub async fn request_reset(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ResetRequest>,
) -> Result<(StatusCode, Json<Mailed>), ApiError> {
    let email = people::normalized_email(&body.email)?;
    people::request_reset(&state.market, &state.public_url, &email).await?;
    let message = format!("If {email} has an account, we mailed it a link to choose a new password.");
    Ok((StatusCode::ACCEPTED, Json(Mailed { message })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// The secret part of the mailed link.
    link: String,
    password: String,
}

/// Sets a new password with a reset link: the address is confirmed, and every session and
/// token the person signed in for ends.
#[utoipa::path(post, path = "/v1/password-resets/confirm", tag = "people", request_body = ResetBody, security(()),
    responses((status = 204)))]
pub async fn reset_password(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ResetBody>,
) -> Result<StatusCode, ApiError> {
    people::reset_password(&state.market, &body.link, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The partner agreement in force.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Agreement {
    version: &'static str,
    /// Markdown.
    text: &'static str,
}

#[utoipa::path(get, path = "/v1/partner-agreement", tag = "people", security(()),
    responses((status = 200, body = Agreement)))]
pub async fn show_agreement() -> Json<Agreement> {
    Json(Agreement { version: AGREEMENT_VERSION, text: AGREEMENT_TEXT })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    company: String,
    /// The namespace wanted.
    namespace: String,
    website: String,
    support_email: String,
    /// The version of the partner agreement accepted: the one in force.
    agreement_version: String,
}

/// The person a token was issued to (`POST /v1/login`): applications are a person's.
async fn person_of(state: &AppState, caller: &Caller) -> Result<PersonId, ApiError> {
    login::person_of(&state.market, caller).await?.ok_or_else(|| {
        crate::MarketError::Forbidden(
            "applying is for people: use a token from POST /v1/login (nexus login), not a machine's".into(),
        )
        .into()
    })
}

/// Applies to the partner program, as the person the token was issued to.
#[utoipa::path(post, path = "/v1/partner-applications", tag = "people", request_body = ApplyBody,
    responses((status = 201, body = Applied)))]
pub async fn apply(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<ApplyBody>,
) -> Result<(StatusCode, Json<Applied>), ApiError> {
    let person = person_of(&state, &caller).await?;
    let application = Application {
        company: body.company,
        namespace: body.namespace,
        website: body.website,
        support_email: body.support_email,
        agreement_version: body.agreement_version,
    };
    Ok((StatusCode::CREATED, Json(partner_program::apply(&state.market, &person, application).await?)))
}

/// Operators: every application, pending first; a person: their own.
#[utoipa::path(get, path = "/v1/partner-applications", tag = "people",
    responses((status = 200, body = Vec<Applied>)))]
pub async fn list_applications(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Json<Vec<Applied>>, ApiError> {
    if let Caller::Operator { .. } = caller {
        let (mut pending, decided) = partner_program::queue(&state.market, &caller).await?;
        pending.extend(decided);
        return Ok(Json(pending));
    }
    let person = person_of(&state, &caller).await?;
    Ok(Json(partner_program::of_person(&state.market, &person).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// `approve` or `reject`.
    decision: String,
    /// Why, for a rejection (mailed to the applicant).
    #[serde(default)]
    reason: Option<String>,
}

/// Decides a pending application once (operators): approving creates the publisher with the
/// applicant as its owner; the applicant is mailed either way.
#[utoipa::path(post, path = "/v1/partner-applications/{id}/decision", tag = "people", request_body = DecisionBody,
    params(("id" = String, Path)), responses((status = 200, body = Applied)))]
pub async fn decide_application(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Json<Applied>, ApiError> {
    let decision = match body.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject { reason: body.reason.unwrap_or_default() },
        other => {
            return Err(ApiError::bad_request(
                nexus_registry::ErrorCode::InvalidRequest,
                format!("`{other}` is not a decision: approve or reject"),
            ));
        }
    };
    // Only operators learn whether an application exists, a malformed id included.
    caller.require_operator()?;
    Ok(Json(partner_program::decide(&state.market, &caller, &id.parse()?, decision).await?))
}
