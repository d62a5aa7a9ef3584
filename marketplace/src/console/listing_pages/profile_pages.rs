//! Each publisher's profile page, which its publisher (or an operator) edits.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::accounts::Caller;
use crate::console::catalog_pages::urlencode;
use crate::console::session::Signed;
use crate::console::{Chrome, Fields, PageError, render};
use crate::publisher_profiles::{self, ProfileEdit, PublisherProfile};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/publishers/{publisher}", get(profile).post(edit_profile))
}

#[derive(Template)]
#[template(path = "publisher_profile.html")]
struct ProfilePage {
    chrome: Chrome,
    profile: PublisherProfile,
    /// The publisher itself (or an operator) is reading: the edit form is shown.
    may_edit: bool,
    notice: Option<String>,
    problem: Option<String>,
}

impl ProfilePage {
    fn average(&self) -> String {
        self.profile.rating_average.map_or_else(|| "no ratings yet".into(), |a| format!("{a:.1} out of 5"))
    }

    fn support_href(&self) -> &str {
        self.profile.support.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Default, Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn profile_page(
    state: &AppState,
    signed: Option<&Signed>,
    publisher: &str,
    notice: Option<String>,
    problem: Option<String>,
) -> Result<Response, PageError> {
    let session = signed.map(|s| &s.0);
    let profile = publisher_profiles::get(&state.market.db, publisher).await?;
    let page = ProfilePage {
        chrome: Chrome::new(profile.display_name.clone(), session),
        may_edit: session.is_some_and(|s| {
            matches!(&s.caller, Caller::Publisher(c) if c.publisher.as_str() == publisher)
                || s.caller.role() == "operator"
        }),
        profile,
        notice,
        problem,
    };
    render(&page)
}

async fn profile(
    State(state): State<AppState>,
    signed: Option<Signed>,
    Path(publisher): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    profile_page(&state, signed.as_ref(), &publisher, query.notice, None).await
}

async fn edit_profile(
    State(state): State<AppState>,
    signed: Signed,
    Path(publisher): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let edit = ProfileEdit {
        website: fields.text("website").map(String::from),
        support: fields.text("support").map(String::from),
        about: fields.get("about").unwrap_or_default().replace("\r\n", "\n"),
    };
    match publisher_profiles::set(&state.market.db, &signed.0.caller, &publisher, &edit).await {
        Ok(_) => Ok(Redirect::to(&format!(
            "/console/publishers/{publisher}?notice={}",
            urlencode("Your profile is updated.")
        ))
        .into_response()),
        Err(error) => {
            let problem = PageError::refusal(error)?.message;
            profile_page(&state, Some(&signed), &publisher, None, Some(problem)).await
        }
    }
}
