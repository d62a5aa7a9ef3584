//! Listings that sell, through the API: ratings and reviews (who may write one, one per
//! organization, replies, hiding, helpful marks, floods), the listing's text rendered and
//! edited between versions with a changelog per version, and publishers' profiles. On
//! SQLite and PostgreSQL.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::common::{Env, on_both};

const ECHO: &str = "nexus-labs/echo";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A tenant that installed echo and ran one event through it; with `days_ago`, the install
/// is moved back that many days (the marketplace's clock is the wall clock).
async fn user(env: &Env, id: &str, days_ago: i64) -> String {
    let token = env.tenant(id).await;
    env.install(&token, ECHO, json!({})).await;
    let event = json!({ "id": format!("evt-{id}"), "type": "order.created", "payload": {} });
    let (status, receipt) = env.post("/v1/events", &token, event).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    if days_ago > 0 {
        sqlx::query("UPDATE installs SET created_at = created_at - $1 WHERE tenant_id = $2")
            .bind(days_ago * DAY_MS)
            .bind(id)
            .execute(env.market.db.writer())
            .await
            .unwrap();
    }
    token
}

async fn review(env: &Env, token: &str, rating: i64, title: &str) -> (StatusCode, Value) {
    let body = json!({ "rating": rating, "title": title, "body": "Works as described." }).to_string();
    env.call("POST", &format!("/v1/catalog/{ECHO}/reviews"), Some(token), Some(&body)).await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

async fn rating(env: &Env) -> Value {
    let (status, detail) = env.call("GET", &format!("/v1/catalog/{ECHO}"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    detail["rating"].clone()
}

async fn visible(env: &Env, query: &str) -> Value {
    let (status, page) = env.call("GET", &format!("/v1/catalog/{ECHO}/reviews?{query}"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

#[test]
fn only_organizations_that_used_a_plugin_for_a_day_review_it_once() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let stranger = env.tenant("initech").await;
        let (status, body) = review(&env, &stranger, 5, "Great").await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "review_not_allowed"), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("initech has never installed nexus-labs/echo"));

        let globex = env.tenant("globex").await;
        env.install(&globex, ECHO, json!({})).await;
        let (status, body) = review(&env, &globex, 5, "Great").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body["error"]["message"].as_str().unwrap().contains("has not yet run an event"), "{body}");
        let event = json!({ "id": "evt-1", "type": "order.created", "payload": {} });
        assert_eq!(env.post("/v1/events", &globex, event).await.0, StatusCode::OK);
        let (status, body) = review(&env, &globex, 5, "Great").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body["error"]["message"].as_str().unwrap().contains("less than a day ago"), "{body}");
        sqlx::query("UPDATE installs SET created_at = created_at - $1 WHERE tenant_id = 'globex'")
            .bind(DAY_MS)
            .execute(env.market.db.writer())
            .await
            .unwrap();

        // Bad input: refused by name, nothing stored.
        for (rating, title, body_text, says) in [
            (0, "Fine", "", "`rating` must be 1 to 5 stars, got 0"),
            (6, "Fine", "", "`rating` must be 1 to 5 stars, got 6"),
            (3, "  ", "", "`title` must not be empty"),
            (3, "Two\nlines", "", "`title` must be a single line"),
            (3, "Fine", "\u{7}bell", "`body` may not contain the control character U+0007"),
        ] {
            let sent = json!({ "rating": rating, "title": title, "body": body_text }).to_string();
            let (status, body) =
                env.call("POST", &format!("/v1/catalog/{ECHO}/reviews"), Some(&globex), Some(&sent)).await;
            assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_review"), "{sent}: {body}");
            assert_eq!(body["error"]["message"], says);
        }
        let long = json!({ "rating": 3, "title": "Fine", "body": "x".repeat(4_001) }).to_string();
        let (status, body) = env.call("POST", &format!("/v1/catalog/{ECHO}/reviews"), Some(&globex), Some(&long)).await;
        assert_eq!(
            (status, body["error"]["message"].as_str()),
            (StatusCode::BAD_REQUEST, Some("`body` must be at most 4000 characters, got 4001"))
        );
        assert_eq!(visible(&env, "").await["total"], 0);

        // Script is stored as typed and returned as a JSON string (pages escape it).
        let (status, written) = review(&env, &globex, 4, "<script>alert(1)</script> solid").await;
        assert_eq!(status, StatusCode::CREATED, "{written}");
        assert_eq!(written["title"], "<script>alert(1)</script> solid");
        assert_eq!((written["rating"].as_i64(), written["version"].as_str()), (Some(4), Some("0.1.0")));
        assert_eq!(
            (written["organization"].as_str(), written["author_name"].as_str()),
            (Some("globex"), Some("globex"))
        );
        let (status, body) = review(&env, &globex, 1, "Again").await;
        assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "review_exists"), "{body}");
        assert_eq!(rating(&env).await, json!({ "count": 1, "average": 4.0, "by_stars": [0, 0, 0, 1, 0] }));
        let (_, card) = env.call("GET", "/v1/catalog?q=echo", None, None).await;
        assert_eq!(
            (card["items"][0]["rating_count"].as_i64(), card["items"][0]["rating_average"].as_f64()),
            (Some(1), Some(4.0))
        );

        // Edited: the figures follow.
        let edit = json!({ "rating": 2, "title": "Slower than hoped" }).to_string();
        let (status, edited) =
            env.call("PUT", &format!("/v1/catalog/{ECHO}/reviews/mine"), Some(&globex), Some(&edit)).await;
        assert_eq!(status, StatusCode::OK, "{edited}");
        assert_eq!((edited["id"].clone(), edited["body"].as_str()), (written["id"].clone(), Some("")));
        assert_eq!(rating(&env).await, json!({ "count": 1, "average": 2.0, "by_stars": [0, 1, 0, 0, 0] }));
        let id = written["id"].as_str().unwrap();

        // The publisher replies once and edits it; nobody else replies.
        let reply = |text: &str| json!({ "body": text }).to_string();
        let path = format!("/v1/reviews/{id}/reply");
        let (status, replied) = env.call("PUT", &path, Some(&env.publisher), Some(&reply("Fixed in 0.2"))).await;
        assert_eq!(status, StatusCode::OK, "{replied}");
        assert_eq!(
            (replied["reply"]["body"].as_str(), replied["reply"].get("edited_at")),
            (Some("Fixed in 0.2"), None)
        );
        let (_, again) = env.call("PUT", &path, Some(&env.publisher), Some(&reply("Fixed in 0.2.1"))).await;
        assert_eq!(again["reply"]["body"], "Fixed in 0.2.1");
        assert_eq!(again["reply"]["at"], replied["reply"]["at"]);
        assert!(again["reply"]["edited_at"].is_i64());
        for token in [&globex, &env.operator] {
            let (status, _) = env.call("PUT", &path, Some(token), Some(&reply("me too"))).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }

        // Helpful: once per organization, never on one's own.
        let helpful = format!("/v1/reviews/{id}/helpful");
        for _ in 0..2 {
            let (status, marked) = env.call("PUT", &helpful, Some(&stranger), None).await;
            assert_eq!((status, marked["helpful"].as_i64()), (StatusCode::OK, Some(1)), "{marked}");
        }
        assert_eq!(env.call("PUT", &helpful, Some(&globex), None).await.0, StatusCode::FORBIDDEN);

        // Hidden by an operator: gone from the listing and its figures; its authors see why.
        let hide = json!({ "reason": "Names a person" }).to_string();
        assert_eq!(
            env.call("PUT", &format!("/v1/reviews/{id}/hidden"), Some(&globex), Some(&hide)).await.0,
            StatusCode::FORBIDDEN
        );
        let (status, hidden) =
            env.call("PUT", &format!("/v1/reviews/{id}/hidden"), Some(&env.operator), Some(&hide)).await;
        assert_eq!((status, hidden["hidden"]["reason"].as_str()), (StatusCode::OK, Some("Names a person")), "{hidden}");
        assert_eq!(visible(&env, "").await["total"], 0);
        assert_eq!(rating(&env).await, json!({ "count": 0, "average": null, "by_stars": [0, 0, 0, 0, 0] }));
        let (_, mine) = env.call("GET", &format!("/v1/catalog/{ECHO}/reviews/mine"), Some(&globex), None).await;
        assert_eq!(mine["hidden"]["reason"], "Names a person");
        let (_, seen) = env.call("GET", &format!("/v1/catalog/{ECHO}/reviews"), Some(&env.operator), None).await;
        assert_eq!(
            (seen["total"].as_u64(), seen["items"][0]["hidden"]["reason"].as_str()),
            (Some(1), Some("Names a person"))
        );
        assert_eq!(env.call("PUT", &helpful, Some(&stranger), None).await.0, StatusCode::NOT_FOUND);
        let (status, shown) = env.call("DELETE", &format!("/v1/reviews/{id}/hidden"), Some(&env.operator), None).await;
        assert_eq!((status, shown.get("hidden")), (StatusCode::OK, None));
        assert_eq!(rating(&env).await["count"], 1);

        let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log WHERE target = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(
            actions,
            ["review.written", "review.edited", "review.replied", "review.replied", "review.hidden", "review.shown"]
        );

        assert_eq!(
            env.call("DELETE", &format!("/v1/catalog/{ECHO}/reviews/mine"), Some(&globex), None).await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(rating(&env).await["count"], 0);
        assert_eq!(visible(&env, "").await["total"], 0);
    });
}

#[test]
fn reviews_written_at_once_all_count_and_sort() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let ids: Vec<String> = (0..8).map(|i| format!("org-{i}")).collect();
        let mut tokens = Vec::new();
        for id in &ids {
            tokens.push(user(&env, id, 2).await);
        }
        // Eight organizations review at once, and the first sends its review twice.
        let ratings = [5, 4, 4, 3, 5, 1, 2, 5];
        let mut writes = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            writes.push(review(&env, token, ratings[i], "At once"));
        }
        writes.push(review(&env, &tokens[0], 1, "Twice"));
        let answers = futures_util::future::join_all(writes).await;
        let created = answers.iter().filter(|(status, _)| *status == StatusCode::CREATED).count();
        let conflicts = answers
            .iter()
            .filter(|(status, body)| *status == StatusCode::CONFLICT && code(body) == "review_exists")
            .count();
        assert_eq!((created, conflicts), (8, 1), "{answers:?}");
        let summary = rating(&env).await;
        let total: i64 = sqlx::query_scalar("SELECT rating_total FROM listings WHERE plugin_id = $1")
            .bind(ECHO)
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        let kept: i64 = sqlx::query_scalar("SELECT rating FROM reviews WHERE tenant_id = 'org-0'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(total, ratings[1..].iter().sum::<i64>() + kept);
        assert_eq!(summary["count"], 8);

        // Everyone else marks org-0's review helpful at once, each twice.
        let (_, page) =
            env.call("GET", &format!("/v1/catalog/{ECHO}/reviews?sort=rating-low&per_page=3"), None, None).await;
        assert_eq!(
            page["items"][0]["rating"].as_i64(),
            Some(ratings[1..].iter().copied().chain([kept]).min().unwrap())
        );
        assert_eq!((page["total"].as_u64(), page["next_page"].as_u64()), (Some(8), Some(2)));
        let (_, mine) = env.call("GET", &format!("/v1/catalog/{ECHO}/reviews/mine"), Some(&tokens[0]), None).await;
        let id = mine["id"].as_str().unwrap().to_string();
        let path = format!("/v1/reviews/{id}/helpful");
        let marks = tokens[1..].iter().chain(tokens[1..].iter()).map(|token| env.call("PUT", &path, Some(token), None));
        let answers = futures_util::future::join_all(marks).await;
        assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
        let (_, helpful) =
            env.call("GET", &format!("/v1/catalog/{ECHO}/reviews?sort=helpful&per_page=1"), None, None).await;
        assert_eq!(
            (helpful["items"][0]["id"].as_str(), helpful["items"][0]["helpful"].as_i64()),
            (Some(id.as_str()), Some(7))
        );
        let (_, fives) = env.call("GET", &format!("/v1/catalog/{ECHO}/reviews?rating=5"), None, None).await;
        let expected_fives = ratings[1..].iter().filter(|r| **r == 5).count() as u64 + u64::from(kept == 5);
        assert_eq!(fives["total"].as_u64(), Some(expected_fives));
        let (status, body) = env.call("GET", &format!("/v1/catalog/{ECHO}/reviews?rating=6"), None, None).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_query"));
    });
}

#[test]
fn a_review_flood_is_refused_after_twenty_writes_an_hour() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let token = user(&env, "globex", 2).await;
        assert_eq!(review(&env, &token, 3, "First").await.0, StatusCode::CREATED);
        for i in 1..20 {
            let edit = json!({ "rating": 1 + i % 5, "title": format!("Edit {i}") }).to_string();
            let (status, body) =
                env.call("PUT", &format!("/v1/catalog/{ECHO}/reviews/mine"), Some(&token), Some(&edit)).await;
            assert_eq!(status, StatusCode::OK, "{i}: {body}");
        }
        let edit = json!({ "rating": 5, "title": "One too many" }).to_string();
        let (status, body) =
            env.call("PUT", &format!("/v1/catalog/{ECHO}/reviews/mine"), Some(&token), Some(&edit)).await;
        assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{body}");
        let (_, mine) = env.call("GET", &format!("/v1/catalog/{ECHO}/reviews/mine"), Some(&token), None).await;
        assert_eq!(mine["title"], "Edit 19", "the refused edit changed nothing");
    });
}

#[test]
fn listing_text_is_rendered_inert_edited_between_versions_and_replaced_by_the_next() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let (_, detail) = env.call("GET", "/v1/catalog/nexus-labs/chat-notifier", None, None).await;
        let html = detail["description_html"].as_str().unwrap();
        assert!(html.starts_with("<p>Formats <code>invoice.paid</code>"), "{html}");

        let edit = json!({
            "description": "## Setup\n\nPaste the URL. <script>alert(1)</script> [Docs](https://docs.example.com)",
            "links": { "support": "mailto:help@example.com", "documentation": "https://docs.example.com" },
        })
        .to_string();
        let path = "/v1/catalog/nexus-labs/echo/text";
        let (status, body) = env.call("PATCH", path, Some(&env.operator), Some("{}")).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"));
        let tenant = env.tenant("globex").await;
        assert_eq!(env.call("PATCH", path, Some(&tenant), Some(&edit)).await.0, StatusCode::FORBIDDEN);
        let bad = json!({ "links": { "terms": "javascript:alert(1)" } }).to_string();
        let (status, body) = env.call("PATCH", path, Some(&env.publisher), Some(&bad)).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"));
        assert!(body["error"]["message"].as_str().unwrap().contains("links.terms"), "{body}");

        let (status, edited) = env.call("PATCH", path, Some(&env.publisher), Some(&edit)).await;
        assert_eq!(status, StatusCode::OK, "{edited}");
        assert_eq!(
            edited["description_html"],
            "<h4>Setup</h4>\n<p>Paste the URL. &lt;script&gt;alert(1)&lt;/script&gt; \
             <a href=\"https://docs.example.com\" rel=\"nofollow noopener noreferrer\">Docs</a></p>\n"
        );
        assert_eq!(
            edited["links"],
            json!({ "documentation": "https://docs.example.com", "support": "mailto:help@example.com" })
        );
        assert!(edited["text_edited_at"].is_i64());
        let summary = json!({ "summary": "Echoes events back, edited" }).to_string();
        let (_, edited) = env.call("PATCH", path, Some(&env.publisher), Some(&summary)).await;
        assert_eq!(
            (edited["summary"].as_str(), edited["links"]["support"].as_str()),
            (Some("Echoes events back, edited"), Some("mailto:help@example.com"))
        );
        let (_, found) = env.call("GET", "/v1/catalog?q=edited", None, None).await;
        assert_eq!(found["items"][0]["name"], "echo", "search reads the edited text");
        // Two edits at once of different fields: both land.
        let (first, second) = futures_util::future::join(
            env.call("PATCH", path, Some(&env.publisher), Some(&json!({ "summary": "Both kept" }).to_string())),
            env.call("PATCH", path, Some(&env.publisher), Some(&json!({ "description": "Also kept." }).to_string())),
        )
        .await;
        assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
        let (_, both) = env.call("GET", "/v1/catalog/nexus-labs/echo", None, None).await;
        assert_eq!((both["summary"].as_str(), both["description"].as_str()), (Some("Both kept"), Some("Also kept.")));
        let edits: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'listing.text_edited'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(edits, 4);

        // A new version brings its own text and changelog; the old version keeps its entry.
        let manifest = super::common::manifest_of("echo")
            .replace("version = \"0.1.0\"", "version = \"0.2.0\"")
            .lines()
            .map(|line| if line.starts_with("changelog =") { "changelog = \"Adds **prefixes**.\"" } else { line })
            .collect::<Vec<_>>()
            .join("\n");
        env.publish_manifest(nexus_sample_plugins::ECHO, &manifest).await.unwrap();
        let (_, detail) = env.call("GET", "/v1/catalog/nexus-labs/echo", None, None).await;
        assert_eq!(detail["summary"], "Returns each event's payload, for testing an integration end to end");
        assert_eq!(detail.get("text_edited_at"), None);
        assert_eq!(
            detail["links"]["support"], "mailto:support@nexus-labs.example",
            "the manifest's links again: {detail}"
        );
        let oldest = &detail["versions"].as_array().unwrap().iter().find(|v| v["version"] == "0.1.0").unwrap();
        assert_eq!(oldest["changelog"], "First release: answers with the payload, with an optional `prefix`.");
        let newest = &detail["versions"].as_array().unwrap().iter().find(|v| v["version"] == "0.2.0").unwrap();
        assert_eq!(newest["changelog_html"], "<p>Adds <strong>prefixes</strong>.</p>\n");
    });
}

#[test]
fn publishers_have_public_profiles_they_edit() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = user(&env, "globex", 2).await;
        assert_eq!(review(&env, &globex, 4, "Good").await.0, StatusCode::CREATED);
        let (status, profile) = env.call("GET", "/v1/publishers/nexus-labs/profile", None, None).await;
        assert_eq!(status, StatusCode::OK, "{profile}");
        assert_eq!(
            (profile["install_count"].as_i64(), profile["rating_count"].as_i64(), profile["rating_average"].as_f64()),
            (Some(1), Some(1), Some(4.0))
        );
        let names: Vec<&str> =
            profile["listings"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
        assert_eq!(names[0], "echo", "most installed first: {names:?}");
        assert_eq!(profile["about"], "");

        let path = "/v1/publishers/nexus-labs/profile";
        let edit = json!({ "website": "https://nexus-labs.example", "support": "mailto:support@nexus-labs.example",
                           "about": "We build **integrations**.<img src=x onerror=alert(1)>" })
        .to_string();
        assert_eq!(env.call("PUT", path, Some(&globex), Some(&edit)).await.0, StatusCode::FORBIDDEN);
        let bad = json!({ "website": "ftp://nexus-labs.example" }).to_string();
        let (status, body) = env.call("PUT", path, Some(&env.publisher), Some(&bad)).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
        let (status, profile) = env.call("PUT", path, Some(&env.publisher), Some(&edit)).await;
        assert_eq!(status, StatusCode::OK, "{profile}");
        assert_eq!(
            profile["about_html"],
            "<p>We build <strong>integrations</strong>.&lt;img src=x onerror=alert(1)&gt;</p>\n"
        );
        assert_eq!(profile["support"], "mailto:support@nexus-labs.example");
        let (status, _) = env.call("GET", "/v1/publishers/nobody/profile", None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    });
}

#[test]
fn ratings_move_a_listing_in_relevance_and_top_rated() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let order = |page: &Value| -> Vec<String> {
            page["items"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_string()).collect()
        };
        let mut tokens = Vec::new();
        for id in ["org-a", "org-b", "org-c"] {
            tokens.push(user(&env, id, 2).await);
        }
        // Installs alone put echo first among equal matches of the publisher's name.
        let (_, page) = env.call("GET", "/v1/catalog?q=nexus", None, None).await;
        assert_eq!(order(&page)[0], "echo", "{page}");
        // Three one-star reviews outweigh its installs.
        for token in &tokens {
            assert_eq!(review(&env, token, 1, "Broke our pipeline").await.0, StatusCode::CREATED);
        }
        let (_, page) = env.call("GET", "/v1/catalog?q=nexus", None, None).await;
        assert_eq!(order(&page).last().map(String::as_str), Some("echo"), "{page}");
        // Top rated lists rated listings first, best first.
        let (_, page) = env.call("GET", "/v1/catalog?sort=top-rated&per_page=1", None, None).await;
        assert_eq!(order(&page), ["echo"], "the only rated listing");
        let edit = json!({ "rating": 5, "title": "Fixed now" }).to_string();
        for token in &tokens {
            let (status, _) =
                env.call("PUT", &format!("/v1/catalog/{ECHO}/reviews/mine"), Some(token), Some(&edit)).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (_, page) = env.call("GET", "/v1/catalog?q=nexus", None, None).await;
        assert_eq!(order(&page)[0], "echo");
        assert_eq!(
            (page["items"][0]["rating_average"].as_f64(), page["items"][0]["rating_count"].as_i64()),
            (Some(5.0), Some(3))
        );
    });
}

#[test]
fn hiding_showing_and_replying_at_once_each_count_once() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let token = user(&env, "globex", 2).await;
        let (_, written) = review(&env, &token, 4, "Solid").await;
        let id = written["id"].as_str().unwrap().to_string();
        let hidden = format!("/v1/reviews/{id}/hidden");
        let reason = json!({ "reason": "Off topic" }).to_string();
        // Eight operators' hides at once take the review out of the figures exactly once.
        let hides = (0..8).map(|_| env.call("PUT", &hidden, Some(&env.operator), Some(&reason)));
        let answers = futures_util::future::join_all(hides).await;
        assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
        assert_eq!(rating(&env).await, json!({ "count": 0, "average": null, "by_stars": [0, 0, 0, 0, 0] }));
        let shows = (0..8).map(|_| env.call("DELETE", &hidden, Some(&env.operator), None));
        let answers = futures_util::future::join_all(shows).await;
        assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
        assert_eq!(rating(&env).await, json!({ "count": 1, "average": 4.0, "by_stars": [0, 0, 0, 1, 0] }));
        let total: (i64, i64) = sqlx::query_as("SELECT rating_count, rating_total FROM listings WHERE plugin_id = $1")
            .bind(ECHO)
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(total, (1, 4), "the listing's figures agree with the reviews");
        // Eight replies at once: one reply, first written once and edited by the rest.
        let path = format!("/v1/reviews/{id}/reply");
        let replies: Vec<String> = (0..8).map(|n| json!({ "body": format!("Thanks ({n})") }).to_string()).collect();
        let sent = replies.iter().map(|body| env.call("PUT", &path, Some(&env.publisher), Some(body)));
        let answers = futures_util::future::join_all(sent).await;
        assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
        let first_at: Vec<i64> = answers.iter().map(|(_, r)| r["reply"]["at"].as_i64().unwrap()).collect();
        assert!(first_at.iter().all(|at| *at == first_at[0]), "one first reply: {first_at:?}");
        let (body, edited): (String, Option<i64>) =
            sqlx::query_as("SELECT reply, reply_edited_at FROM reviews WHERE id = $1")
                .bind(&id)
                .fetch_one(&env.market.db.pool)
                .await
                .unwrap();
        assert!(replies.iter().any(|r| r.contains(&body)) && edited.is_some(), "one reply, replaced: {body}");
        let replied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'review.replied' AND target = $1")
                .bind(&id)
                .fetch_one(&env.market.db.pool)
                .await
                .unwrap();
        assert_eq!(replied, 8);
    });
}
