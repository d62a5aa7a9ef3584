//! A listing's words: Markdown rendered to inert HTML, and the publisher's edits of the text
//! between versions.
//!
//! Markdown (descriptions, changelogs, review replies' neighbours, publishers' "about") is
//! rendered by `pulldown-cmark` with raw HTML shown as text, then cleaned by `ammonia` to a
//! small allow-list: no images (a listing's pictures are its screenshots), no scripts or
//! styles, links only to `http`, `https` and `mailto` with `rel="nofollow noopener
//! noreferrer"`. Headings move down two levels so a description's `#` sits under the page's
//! own headings.

use std::collections::HashSet;

use nexus_registry::db::now_ms;
use nexus_registry::manifest::{Links, Manifest};
use nexus_registry::{Db, ErrorCode, PluginId};
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::error::{MarketError, storage};

/// Renders Markdown to HTML safe to put in a page as is.
pub fn markdown_html(text: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(text, options).map(|event| match event {
        // Raw HTML is shown as the text it is, never interpreted.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Heading { level, id, classes, attrs }) => {
            Event::Start(Tag::Heading { level: demoted(level), id, classes, attrs })
        }
        Event::End(TagEnd::Heading(level)) => Event::End(TagEnd::Heading(demoted(level))),
        other => other,
    });
    let mut html = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    ammonia::Builder::default()
        .rm_tags(["img"])
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .link_rel(Some("nofollow noopener noreferrer"))
        .clean(&html)
        .to_string()
}

fn demoted(level: HeadingLevel) -> HeadingLevel {
    match level {
        HeadingLevel::H1 => HeadingLevel::H3,
        HeadingLevel::H2 => HeadingLevel::H4,
        HeadingLevel::H3 => HeadingLevel::H5,
        _ => HeadingLevel::H6,
    }
}

/// The listing's text as shown: the summary, the Markdown description and the links; the
/// newest version's, or the publisher's edit since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingText {
    pub summary: String,
    pub description: String,
    pub links: Links,
    pub edited_at: Option<i64>,
}

/// A publisher's edit of its listing's text; fields left out keep their text.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextEdit {
    /// One line, at most 140 characters.
    pub summary: Option<String>,
    /// Markdown, at most 20,000 characters.
    pub description: Option<String>,
    /// Replaces every link: documentation, support (http(s) or mailto:), privacy, terms.
    pub links: Option<Links>,
}

pub(crate) fn links_json(links: &Links) -> Result<String, MarketError> {
    serde_json::to_string(links).map_err(storage)
}

/// The text of `id`'s listing.
pub async fn read(db: &Db, id: &PluginId) -> Result<ListingText, MarketError> {
    let row: Option<(String, String, String, Option<i64>)> =
        sqlx::query_as("SELECT summary, description, links, text_edited_at FROM listings WHERE plugin_id = $1")
            .bind(id.to_string())
            .fetch_optional(&db.pool)
            .await?;
    let (summary, description, links, edited_at) = row.ok_or_else(|| MarketError::NotFound(format!("plugin {id}")))?;
    let links = serde_json::from_str(&links).map_err(|e| storage(format!("stored links of {id}: {e}")))?;
    Ok(ListingText { summary, description, links, edited_at })
}

/// Edits the text of a listing between versions, audited with the fields changed (the old
/// and new text stay readable in the registry and the listing). The next version published
/// replaces the edit with its manifest's text.
pub async fn edit(db: &Db, caller: &Caller, id: &PluginId, edit: &TextEdit) -> Result<ListingText, MarketError> {
    caller.may_act_for_publisher(id.publisher.as_str())?;
    let mut changed = Vec::new();
    for (field, given) in [
        ("summary", edit.summary.is_some()),
        ("description", edit.description.is_some()),
        ("links", edit.links.is_some()),
    ] {
        if given {
            changed.push(field);
        }
    }
    if changed.is_empty() {
        return Err(MarketError::invalid(
            ErrorCode::InvalidRequest,
            "send at least one of summary, description, links",
        ));
    }
    let plugin = id.to_string();
    let mut tx = db.write_tx().await?;
    // Lock the row before reading it: two edits at once apply one after the other, and the
    // second keeps the fields the first changed and it did not.
    let locked = sqlx::query("UPDATE listings SET text_edited_at = text_edited_at WHERE plugin_id = $1")
        .bind(&plugin)
        .execute(&mut *tx)
        .await?;
    if locked.rows_affected() == 0 {
        return Err(MarketError::NotFound(format!("plugin {id}")));
    }
    let (summary, description, links, categories): (String, String, String, String) =
        sqlx::query_as("SELECT summary, description, links, categories FROM listings WHERE plugin_id = $1")
            .bind(&plugin)
            .fetch_one(&mut *tx)
            .await?;
    let links: Links = serde_json::from_str(&links).map_err(|e| storage(format!("stored links of {id}: {e}")))?;
    let text = ListingText {
        summary: edit.summary.clone().unwrap_or(summary),
        description: edit.description.clone().unwrap_or(description),
        links: edit.links.clone().unwrap_or(links),
        edited_at: Some(now_ms()),
    };
    Manifest::check_listing_text(&text.summary, &text.description, &text.links)
        .map_err(|e| MarketError::invalid(ErrorCode::InvalidRequest, e.to_string()))?;
    let search_words = super::search_words(id, &text.summary, &text.description, &categories);
    sqlx::query(
        "UPDATE listings SET summary = $1, description = $2, links = $3, text_edited_at = $4, search_words = $5 \
         WHERE plugin_id = $6",
    )
    .bind(&text.summary)
    .bind(&text.description)
    .bind(links_json(&text.links)?)
    .bind(text.edited_at)
    .bind(search_words)
    .bind(&plugin)
    .execute(&mut *tx)
    .await?;
    audit::record(&mut *tx, &caller.actor(), "listing.text_edited", &plugin, json!({ "fields": changed })).await?;
    tx.commit().await?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::markdown_html;

    #[test]
    fn markdown_is_rendered_inert() {
        assert_eq!(markdown_html("Uses `invoice.paid`."), "<p>Uses <code>invoice.paid</code>.</p>\n");
        assert_eq!(markdown_html("# Setup"), "<h3>Setup</h3>\n");
        assert_eq!(
            markdown_html("[docs](https://example.com)"),
            "<p><a href=\"https://example.com\" rel=\"nofollow noopener noreferrer\">docs</a></p>\n"
        );
        // Raw HTML is text; a script never becomes an element.
        let html = markdown_html("<script>alert(1)</script>\n\nhi <b onclick=x>there</b>");
        assert!(!html.contains("<script") && !html.contains("<b"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        // Links to other schemes lose their target; images are dropped.
        assert_eq!(markdown_html("[x](javascript:alert(1))"), "<p><a rel=\"nofollow noopener noreferrer\">x</a></p>\n");
        assert_eq!(markdown_html("![logo](https://evil.example/t.png)"), "<p></p>\n");
    }
}
