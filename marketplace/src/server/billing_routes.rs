//! Money over HTTP: plans (publishers), plan changes and settling (tenants), charges and bills
//! (tenants, operators), sales (partners), refunds, revenue-share policies, billing runs and
//! the ledger check (operators). Requests that move money take an `Idempotency-Key`, which
//! the domain stores with what it wrote.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, MaybeAuth};
use super::extract::{JsonBody, QueryParams};
use super::idempotency::HEADER as IDEMPOTENCY_KEY;
use super::registry_routes::plugin_id;
use super::{ApiError, AppState};
use crate::billing::charges::{self, Charge, ChargeQuery, UsageSource};
use crate::billing::collect::{self, Attempt};
use crate::billing::estimate::PluginUsage;
use crate::billing::estimate::UsageSoFar;
use crate::billing::gmv::{self, EcosystemPeriod, EcosystemQuery, Gmv, GmvQuery};
use crate::billing::ledger::{self, LedgerReport, LedgerTransaction};
use crate::billing::payouts::{
    self, Adjustment, AdjustmentRequest, HoldRequest, MinimumRequest, NextPayout, Payout, PayoutDetail,
    PayoutRunReport, PayoutRunRequest,
};
use crate::billing::plans::{self, Plan, PlanRequest};
use crate::billing::refunds::{self, Refund, RefundRequest};
use crate::billing::run::{self, RunReport, RunRequest};
use crate::billing::settle::{self, PlanChange, PlanChangePreview, PreviewQuery, SettleReport};
use crate::billing::share::{self, PolicyRequest, SharePolicy};
use crate::billing::statements::{self, Statement, StatementSummary};
use crate::billing::views::{self, Bill, Sales};
use crate::error::{Page, PageQuery};
use crate::installs::Install;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans, put_plan))
        .routes(routes!(retire_plan))
        .routes(routes!(change_plan))
        .routes(routes!(preview_plan_change))
        .routes(routes!(show_usage))
        .routes(routes!(show_plugin_usage))
        .routes(routes!(settle_install))
        .routes(routes!(list_charges))
        .routes(routes!(show_charge))
        .routes(routes!(list_charge_invocations))
        .routes(routes!(refund_charge))
        .routes(routes!(show_bill))
        .routes(routes!(show_sales))
        .routes(routes!(list_policies, put_policy))
        .routes(routes!(run_billing))
        .routes(routes!(verify_ledger))
        .routes(routes!(list_statements))
        .routes(routes!(show_statement))
        .routes(routes!(list_payouts))
        .routes(routes!(next_payouts))
        .routes(routes!(show_payout))
        .routes(routes!(hold_payouts, release_payouts))
        .routes(routes!(adjust_balance))
        .routes(routes!(run_payouts))
        .routes(routes!(set_minimum))
        .routes(routes!(show_gmv))
        .routes(routes!(show_ecosystem))
}

fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    headers.get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty())
}

/// Whether the client asked for CSV (`Accept: text/csv` or `?format=csv`).
fn wants_csv(headers: &HeaderMap, format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => {
            Err(ApiError::bad_request(ErrorCode::InvalidQuery, format!("format `{other}` is not csv or json")))
        }
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/csv")))),
    }
}

pub(crate) fn csv(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.csv\"")),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PlansQuery {
    /// Every revision, retired ones included (the publisher and operators).
    #[serde(default)]
    all: bool,
}

/// The plans a plugin offers (public), or all revisions (its publisher, operators).
#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/plans", tag = "billing",
    params(("publisher" = String, Path), ("name" = String, Path), PlansQuery), responses((status = 200, body = Vec<Plan>)))]
pub async fn list_plans(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    Path((publisher, name)): Path<(String, String)>,
    QueryParams(query): QueryParams<PlansQuery>,
) -> Result<Json<Vec<Plan>>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    if query.all {
        let caller = caller.ok_or(nexus_registry::RegistryError::Unauthenticated)?;
        caller.may_act_for_publisher(id.publisher.as_str())?;
        return Ok(Json(plans::all(&state.market, &id).await?));
    }
    Ok(Json(plans::offered(&state.market, &id).await?))
}

/// Adds a plan or a new revision of one (the plugin's publisher).
#[utoipa::path(post, path = "/v1/plugins/{publisher}/{name}/plans", tag = "billing",
    params(("publisher" = String, Path), ("name" = String, Path)), request_body = PlanRequest,
    responses((status = 201, body = Plan)))]
pub async fn put_plan(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<PlanRequest>,
) -> Result<(StatusCode, Json<Plan>), ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok((StatusCode::CREATED, Json(plans::put(&state.market, &caller, &id, body).await?)))
}

/// Stops offering a plan to new installs; installs on it keep it.
#[utoipa::path(delete, path = "/v1/plugins/{publisher}/{name}/plans/{key}", tag = "billing",
    params(("publisher" = String, Path), ("name" = String, Path), ("key" = String, Path)),
    responses((status = 204, description = "retired")))]
pub async fn retire_plan(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    plans::retire(&state.market, &caller, &id, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves an install to another plan, prorated; needs an `Idempotency-Key`.
#[utoipa::path(put, path = "/v1/installs/{id}/plan", tag = "billing", params(("id" = String, Path),
    ("Idempotency-Key" = String, Header, description = "required: the change moves money")),
    request_body = PlanChange, responses((status = 200, body = Install)))]
pub async fn change_plan(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PlanChange>,
) -> Result<Json<Install>, ApiError> {
    Ok(Json(settle::change_plan(&state.market, &caller, &id, body, idempotency_key(&headers)).await?))
}

/// What moving an install to `plan` would credit and charge now (the same rules as the
/// change itself); nothing is written.
#[utoipa::path(get, path = "/v1/installs/{id}/plan/preview", tag = "billing", params(("id" = String, Path), PreviewQuery),
    responses((status = 200, body = PlanChangePreview)))]
pub async fn preview_plan_change(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PreviewQuery>,
) -> Result<Json<PlanChangePreview>, ApiError> {
    Ok(Json(settle::preview_change(&state.market, &caller, &id, query).await?))
}

/// An install's usage so far this period, rated as the billing run will rate it, and when
/// it is next charged.
#[utoipa::path(get, path = "/v1/installs/{id}/usage", tag = "billing", params(("id" = String, Path)),
    responses((status = 200, body = UsageSoFar)))]
pub async fn show_usage(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<UsageSoFar>, ApiError> {
    Ok(Json(crate::billing::estimate::usage_so_far(&state.market, &caller, &id).await?))
}

/// Every live install of a plugin with its usage so far this period and what it would be
/// charged if the period ended now, with totals per currency: the publisher's view of
/// `GET /v1/installs/{id}/usage`.
#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/usage", tag = "billing",
    params(("publisher" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = PluginUsage)))]
pub async fn show_plugin_usage(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<Json<PluginUsage>, ApiError> {
    Ok(Json(crate::billing::estimate::plugin_usage(&state.market, &caller, &publisher, &name).await?))
}

/// Pays an install's failed charges now; an install paused for payment resumes once none is
/// outstanding.
#[utoipa::path(post, path = "/v1/installs/{id}/settle", tag = "billing", params(("id" = String, Path)),
    responses((status = 200, body = SettleReport)))]
pub async fn settle_install(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<SettleReport>, ApiError> {
    Ok(Json(settle::settle(&state.market, &caller, &id).await?))
}

#[utoipa::path(get, path = "/v1/charges", tag = "billing", params(ChargeQuery),
    responses((status = 200, body = Page<Charge>)))]
pub async fn list_charges(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<ChargeQuery>,
) -> Result<Json<Page<Charge>>, ApiError> {
    Ok(Json(charges::list(&state.market, &caller, &query).await?))
}

/// A charge with its collection attempts, refunds and ledger transactions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChargeDetails {
    pub charge: Charge,
    pub attempts: Vec<Attempt>,
    pub refunds: Vec<Refund>,
    pub ledger: Vec<LedgerTransaction>,
}

#[utoipa::path(get, path = "/v1/charges/{id}", tag = "billing", params(("id" = String, Path)),
    responses((status = 200, body = ChargeDetails)))]
pub async fn show_charge(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<ChargeDetails>, ApiError> {
    let id = id.parse()?;
    let charge = charges::get(&state.market, &caller, &id).await?;
    Ok(Json(ChargeDetails {
        charge,
        attempts: collect::attempts(&state.market, &id).await?,
        refunds: refunds::of_charge(&state.market, &id).await?,
        ledger: ledger::of_charge(&state.market, &id).await?,
    }))
}

/// The applied invocations a usage line counted.
#[utoipa::path(get, path = "/v1/charges/{id}/invocations", tag = "billing", params(("id" = String, Path), PageQuery),
    responses((status = 200, body = Page<UsageSource>)))]
pub async fn list_charge_invocations(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Page<UsageSource>>, ApiError> {
    Ok(Json(charges::usage_sources(&state.market, &caller, &id.parse()?, &query).await?))
}

/// Refunds part of a collected charge (operators); needs an `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/charges/{id}/refunds", tag = "billing", params(("id" = String, Path),
    ("Idempotency-Key" = String, Header, description = "required: a refund moves money")),
    request_body = RefundRequest, responses((status = 201, body = Refund)))]
pub async fn refund_charge(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RefundRequest>,
) -> Result<(StatusCode, Json<Refund>), ApiError> {
    let refund = refunds::refund(&state.market, &caller, &id.parse()?, body, idempotency_key(&headers)).await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BillQuery {
    /// Operators name the tenant.
    tenant: Option<String>,
    /// `csv` or `json` (default: by `Accept`).
    format: Option<String>,
}

/// A tenant's bill for a month (`YYYY-MM`, UTC), JSON or CSV.
#[utoipa::path(get, path = "/v1/bills/{period}", tag = "billing", params(("period" = String, Path), BillQuery),
    responses((status = 200, description = "the bill", content((Bill = "application/json"), (String = "text/csv")))))]
pub async fn show_bill(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(period): Path<String>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<BillQuery>,
) -> Result<Response, ApiError> {
    let csv_wanted = wants_csv(&headers, query.format.as_deref())?;
    let bill = views::bill(&state.market, &caller, query.tenant.as_deref(), &period).await?;
    if csv_wanted {
        return Ok(csv(&format!("bill-{}-{}", bill.tenant, bill.period), views::bill_csv(&bill)));
    }
    Ok(Json(bill).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SalesQuery {
    /// `YYYY-MM`; default all time.
    period: Option<String>,
    format: Option<String>,
}

/// A partner's sales per plugin, plan and currency, and its balance (the partner, operators).
#[utoipa::path(get, path = "/v1/publishers/{publisher}/sales", tag = "billing",
    params(("publisher" = String, Path), SalesQuery),
    responses((status = 200, description = "the sales", content((Sales = "application/json"), (String = "text/csv")))))]
pub async fn show_sales(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<SalesQuery>,
) -> Result<Response, ApiError> {
    let csv_wanted = wants_csv(&headers, query.format.as_deref())?;
    let sales = views::sales(&state.market, &caller, &publisher, query.period.as_deref()).await?;
    if csv_wanted {
        let name = format!("sales-{publisher}-{}", sales.period.as_deref().unwrap_or("all"));
        return Ok(csv(&name, views::sales_csv(&sales)));
    }
    Ok(Json(sales).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    /// The policies that apply to one partner (the partner may ask for its own).
    publisher: Option<String>,
}

#[utoipa::path(get, path = "/v1/revenue-share/policies", tag = "billing", params(PolicyQuery),
    responses((status = 200, body = Vec<SharePolicy>)))]
pub async fn list_policies(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<PolicyQuery>,
) -> Result<Json<Vec<SharePolicy>>, ApiError> {
    Ok(Json(share::list(&state.market, &caller, query.publisher.as_deref()).await?))
}

/// Sets a revenue-share policy from a date on (operators).
#[utoipa::path(post, path = "/v1/revenue-share/policies", tag = "billing", request_body = PolicyRequest,
    responses((status = 201, body = SharePolicy)))]
pub async fn put_policy(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<PolicyRequest>,
) -> Result<(StatusCode, Json<SharePolicy>), ApiError> {
    Ok((StatusCode::CREATED, Json(share::put(&state.market, &caller, body).await?)))
}

/// Bills and collects everything due up to now (operators).
#[utoipa::path(post, path = "/v1/billing/runs", tag = "billing", request_body = RunRequest,
    responses((status = 200, body = RunReport)))]
pub async fn run_billing(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(request): JsonBody<RunRequest>,
) -> Result<Json<RunReport>, ApiError> {
    Ok(Json(run::run_for(&state.market, &caller, request).await?))
}

/// Recomputes every ledger invariant (operators).
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "billing", responses((status = 200, body = LedgerReport)))]
pub async fn verify_ledger(State(state): State<AppState>, Auth(caller): Auth) -> Result<Json<LedgerReport>, ApiError> {
    caller.require_operator()?;
    Ok(Json(ledger::verify(&state.market).await?))
}

/// A partner's months with statements, per currency, newest first.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/statements", tag = "payouts",
    params(("publisher" = String, Path)), responses((status = 200, body = Vec<StatementSummary>)))]
pub async fn list_statements(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<Json<Vec<StatementSummary>>, ApiError> {
    Ok(Json(statements::list(&state.market, &caller, &publisher).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    /// One currency; default every currency the partner has entries in.
    currency: Option<String>,
    /// `csv` or `json` (default: by `Accept`, or a `.csv` period).
    format: Option<String>,
}

/// A partner's statements for a month (`YYYY-MM`, or `YYYY-MM.csv`), one per currency.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/statements/{period}", tag = "payouts",
    params(("publisher" = String, Path), ("period" = String, Path), StatementQuery),
    responses((status = 200, description = "the statements", content((Vec<Statement> = "application/json"), (String = "text/csv")))))]
pub async fn show_statement(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, period)): Path<(String, String)>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<StatementQuery>,
) -> Result<Response, ApiError> {
    let (period, suffix_csv) = match period.strip_suffix(".csv") {
        Some(period) => (period.to_string(), true),
        None => (period, false),
    };
    let csv_wanted = suffix_csv || wants_csv(&headers, query.format.as_deref())?;
    let found = statements::statements(&state.market, &caller, &publisher, &period, query.currency.as_deref()).await?;
    if csv_wanted {
        return Ok(csv(&format!("statement-{publisher}-{period}"), statements::csv(&found)));
    }
    Ok(Json(found).into_response())
}

#[utoipa::path(get, path = "/v1/publishers/{publisher}/payouts", tag = "payouts",
    params(("publisher" = String, Path)), responses((status = 200, body = Vec<Payout>)))]
pub async fn list_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<Json<Vec<Payout>>, ApiError> {
    Ok(Json(payouts::list(&state.market, &caller, &publisher).await?))
}

/// The partner's next payout per currency: balance, minimum and what is missing, when, and
/// why a balance waits.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/payouts/next", tag = "payouts",
    params(("publisher" = String, Path)), responses((status = 200, body = Vec<NextPayout>)))]
pub async fn next_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<Json<Vec<NextPayout>>, ApiError> {
    Ok(Json(payouts::outlook(&state.market, &caller, &publisher).await?))
}

/// A payout with the statement lines it settles and how they add up to it.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/payouts/{id}", tag = "payouts",
    params(("publisher" = String, Path), ("id" = String, Path)), responses((status = 200, body = PayoutDetail)))]
pub async fn show_payout(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, id)): Path<(String, String)>,
) -> Result<Json<PayoutDetail>, ApiError> {
    Ok(Json(payouts::detail(&state.market, &caller, &publisher, &id).await?))
}

/// Holds a partner's payouts (operators).
#[utoipa::path(post, path = "/v1/publishers/{publisher}/payout-hold", tag = "payouts",
    params(("publisher" = String, Path)), request_body = HoldRequest, responses((status = 204, description = "held")))]
pub async fn hold_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    JsonBody(body): JsonBody<HoldRequest>,
) -> Result<StatusCode, ApiError> {
    payouts::hold(&state.market, &caller, &publisher, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Releases a partner's payout hold (operators).
#[utoipa::path(delete, path = "/v1/publishers/{publisher}/payout-hold", tag = "payouts",
    params(("publisher" = String, Path)), responses((status = 204, description = "released")))]
pub async fn release_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<StatusCode, ApiError> {
    payouts::release(&state.market, &caller, &publisher).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adjusts a partner's balance (operators); needs an `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/publishers/{publisher}/adjustments", tag = "payouts", params(("publisher" = String, Path),
    ("Idempotency-Key" = String, Header, description = "required: an adjustment moves money")),
    request_body = AdjustmentRequest, responses((status = 201, body = Adjustment)))]
pub async fn adjust_balance(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AdjustmentRequest>,
) -> Result<(StatusCode, Json<Adjustment>), ApiError> {
    let adjustment = payouts::adjust(&state.market, &caller, &publisher, body, idempotency_key(&headers)).await?;
    Ok((StatusCode::CREATED, Json(adjustment)))
}

/// Pays every partner due in this payout period (operators); a second run pays nothing.
#[utoipa::path(post, path = "/v1/payouts/runs", tag = "payouts", request_body = PayoutRunRequest,
    responses((status = 200, body = PayoutRunReport)))]
pub async fn run_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(_body): JsonBody<PayoutRunRequest>,
) -> Result<Json<PayoutRunReport>, ApiError> {
    Ok(Json(payouts::run_for(&state.market, &caller).await?))
}

/// Sets a currency's minimum payout (operators).
#[utoipa::path(put, path = "/v1/payouts/minimums/{currency}", tag = "payouts", params(("currency" = String, Path)),
    request_body = MinimumRequest, responses((status = 204, description = "set")))]
pub async fn set_minimum(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(currency): Path<String>,
    JsonBody(body): JsonBody<MinimumRequest>,
) -> Result<StatusCode, ApiError> {
    payouts::set_minimum(&state.market, &caller, &currency, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GMV, refunds, net revenue and take rate by period and currency, by plugin, partner or
/// category (operators; a partner its own).
#[utoipa::path(get, path = "/v1/metrics/gmv", tag = "payouts", params(GmvQuery),
    responses((status = 200, description = "the figures", content((Gmv = "application/json"), (String = "text/csv")))))]
pub async fn show_gmv(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    QueryParams(query): QueryParams<GmvQuery>,
) -> Result<Response, ApiError> {
    let csv_wanted = wants_csv(&headers, query.format.as_deref())?;
    let figures = gmv::gmv(&state.market, &caller, &query).await?;
    if csv_wanted {
        return Ok(csv("gmv", gmv::gmv_csv(&figures)));
    }
    Ok(Json(figures).into_response())
}

/// Partners, listings, installs, paying tenants, invocations, top plugins and partners and
/// GMV growth, period by period (operators).
#[utoipa::path(get, path = "/v1/metrics/ecosystem", tag = "payouts", params(EcosystemQuery),
    responses((status = 200, body = Vec<EcosystemPeriod>)))]
pub async fn show_ecosystem(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<EcosystemQuery>,
) -> Result<Json<Vec<EcosystemPeriod>>, ApiError> {
    Ok(Json(gmv::ecosystem(&state.market, &caller, &query).await?))
}
