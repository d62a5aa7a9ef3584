//! The forms of a listing's page: tenants write, update and delete their review; the
//! publisher replies, operators hide and show reviews, tenants mark them helpful; the
//! publisher edits the listing's text.

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use nexus_registry::{ErrorCode, PluginId};

use super::{Typed, back, refused};
use crate::MarketError;
use crate::accounts::TenantScope;
use crate::catalog::listing_text::{self, TextEdit};
use crate::console::catalog_pages::{plugin_id, urlencode};
use crate::console::session::Signed;
use crate::console::{Fields, PageError};
use crate::ids::ReviewId;
use crate::reviews::{self, ReviewInput};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/catalog/{publisher}/{name}/review", post(write_review))
        .route("/console/catalog/{publisher}/{name}/text", post(edit_text))
        .route("/console/reviews/{id}/{action}", post(act_on_review))
}

async fn write_review(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let id = plugin_id(&publisher, &name)?;
    let db = &state.market.db;
    let caller = &signed.0.caller;
    if fields.get("delete").is_some() {
        return match reviews::delete_mine(&state.market, caller, &id).await {
            Ok(()) => Ok(back(&id, "Your review was deleted.")),
            Err(error) => refused(&state, &signed, &id, error, Typed::default()).await,
        };
    }
    let typed = Typed {
        rating: fields.get("rating").unwrap_or_default().to_string(),
        title: fields.get("title").unwrap_or_default().to_string(),
        body: fields.get("body").unwrap_or_default().replace("\r\n", "\n"),
    };
    let Ok(rating) = typed.rating.trim().parse::<i64>() else {
        let error = MarketError::invalid(ErrorCode::InvalidReview, "choose a rating from 1 to 5 stars");
        return refused(&state, &signed, &id, error, typed).await;
    };
    let input = ReviewInput { rating, title: typed.title.clone(), body: typed.body.clone() };
    let existing = match caller.tenant(TenantScope::Read) {
        Ok(_) => reviews::mine(db, caller, &id).await.is_ok(),
        Err(_) => false,
    };
    match reviews::write(&state.market, caller, &id, &input, !existing).await {
        Ok(_) if existing => Ok(back(&id, "Your review was updated.")),
        Ok(_) => Ok(back(&id, "Thank you: your review is published.")),
        Err(error) => refused(&state, &signed, &id, error, typed).await,
    }
}

/// `reply`, `unreply`, `hide`, `show`, `helpful`, `unhelpful` on review `id`.
async fn act_on_review(
    State(state): State<AppState>,
    signed: Signed,
    Path((review_id, action)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let review_id: ReviewId = review_id.parse()?;
    let db = &state.market.db;
    let caller = &signed.0.caller;
    let plugin: Option<String> = sqlx::query_scalar("SELECT plugin_id FROM reviews WHERE id = $1")
        .bind(&review_id)
        .fetch_optional(&db.pool)
        .await
        .map_err(MarketError::from)?;
    let plugin = plugin.ok_or_else(|| MarketError::NotFound(format!("review {review_id}")))?;
    let id: PluginId = plugin.parse().map_err(nexus_registry::RegistryError::from)?;
    let text = fields.get("text").unwrap_or_default().replace("\r\n", "\n");
    let (outcome, notice) = match action.as_str() {
        "reply" => (reviews::reply(&state.market, caller, &review_id, Some(&text)).await, "Your reply is published."),
        "unreply" => (reviews::reply(&state.market, caller, &review_id, None).await, "Your reply was removed."),
        "hide" => (
            reviews::hide(&state.market, caller, &review_id, Some(&text)).await,
            "The review is hidden; its author sees why.",
        ),
        "show" => (reviews::hide(&state.market, caller, &review_id, None).await, "The review is shown again."),
        "helpful" => (reviews::mark_helpful(&state.market, caller, &review_id, true).await, "Marked helpful."),
        "unhelpful" => {
            (reviews::mark_helpful(&state.market, caller, &review_id, false).await, "Helpful mark taken back.")
        }
        other => return Err(MarketError::NotFound(format!("review action {other}")).into()),
    };
    match outcome {
        Ok(_) => Ok(back(&id, notice)),
        Err(error) => refused(&state, &signed, &id, error, Typed::default()).await,
    }
}

/// The publisher edits the listing's summary, description and links.
async fn edit_text(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let id = plugin_id(&publisher, &name)?;
    let link = |name: &str| fields.text(name).map(String::from);
    let edit = TextEdit {
        summary: Some(fields.get("summary").unwrap_or_default().trim().to_string()),
        description: Some(fields.get("description").unwrap_or_default().replace("\r\n", "\n")),
        links: Some(nexus_registry::manifest::Links {
            documentation: link("documentation"),
            support: link("support"),
            privacy: link("privacy"),
            terms: link("terms"),
        }),
    };
    match listing_text::edit(&state.market.db, &signed.0.caller, &id, &edit).await {
        Ok(_) => Ok(Redirect::to(&format!(
            "/console/catalog/{id}?notice={}",
            urlencode("The listing's text is updated; the next version you publish brings its own.")
        ))
        .into_response()),
        Err(error) => refused(&state, &signed, &id, error, Typed::default()).await,
    }
}
