//! The catalog through the API: search terms, filters, sorts and pages; featuring and
//! delisting by operators and what each role then sees; listings following new and yanked
//! versions; the listing detail. On SQLite and PostgreSQL.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::common::{Env, Options, consent_for, on_both};

const FREE: &str = "id = \"free\"\nname = \"Free\"\nmodel = \"free\"";
const FLAT: &str =
    "id = \"pro\"\nname = \"Pro\"\nmodel = \"flat\"\namount-minor = 900\ncurrency = \"USD\"\ninterval = \"month\"";
const PER_UNIT: &str = "id = \"per-email\"\nname = \"Pay per email\"\nmodel = \"per-unit\"\nmeter = \"emails-sent\"\n\
                        unit-amount-minor = 3\ncurrency = \"EUR\"";

/// A plugin listed under its own name, built on the echo component (which imports only
/// `config`, so `capability` is `config` or `secrets`).
struct Extra {
    name: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    categories: &'static [&'static str],
    capability: (&'static str, &'static str),
    pricing: &'static str,
}

const LEDGER_SYNC: Extra = Extra {
    name: "ledger-sync",
    summary: "Sync paid invoices to your ledger every night",
    description: None,
    categories: &["finance", "billing"],
    capability: ("config", "Reads which ledger account to post to"),
    pricing: FLAT,
};

const INVOICE_MAILER: Extra = Extra {
    name: "invoice-mailer",
    summary: "Email each paid invoice to the customer and note it in the ledger",
    description: None,
    categories: &["billing", "messaging"],
    capability: ("secrets", "Reads the SMTP password of your mail server"),
    pricing: PER_UNIT,
};

const CHURN_RADAR: Extra = Extra {
    name: "churn-radar",
    summary: "Flag accounts likely to churn before renewal",
    description: Some("Scores every account weekly from ledger entries and support tickets."),
    categories: &["analytics", "crm"],
    capability: ("config", "Reads the score above which an account is flagged"),
    pricing: FREE,
};

impl Extra {
    fn manifest(&self, version: &str) -> String {
        let categories: Vec<String> = self.categories.iter().map(|c| format!("{c:?}")).collect();
        let description = self.description.map(|d| format!("description = {d:?}\n")).unwrap_or_default();
        format!(
            "id = \"nexus-labs/{name}\"\nversion = \"{version}\"\nsummary = {summary:?}\n{description}\
             categories = [{categories}]\nlicense = \"MIT\"\ncontract = \"1.0\"\nevent-types = [\"*\"]\n\n\
             [capabilities.{capability}]\nreason = {reason:?}\n\n[[pricing]]\n{pricing}\n",
            name = self.name,
            summary = self.summary,
            categories = categories.join(", "),
            capability = self.capability.0,
            reason = self.capability.1,
            pricing = self.pricing,
        )
    }
}

/// Every listing, in publish order: the samples, then the extras.
const ALL: [&str; 7] =
    ["chat-notifier", "pii-redactor", "tax-calculator", "echo", "ledger-sync", "invoice-mailer", "churn-radar"];

/// The four samples and three extras, each published a few milliseconds after the last so
/// `newest` has one exact order.
async fn catalog(postgres: bool) -> Env {
    let env = Env::with(postgres, Options { samples: false, ..Options::default() }).await;
    for (name, path, manifest) in nexus_sample_plugins::PUBLISHABLE {
        env.publish_sample(name, path, manifest, "0.1.0").await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for extra in [LEDGER_SYNC, INVOICE_MAILER, CHURN_RADAR] {
        env.publish_manifest(nexus_sample_plugins::ECHO, &extra.manifest("0.1.0")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    env
}

/// Installs that make `popular` differ from `name`: echo 3, churn-radar 2, ledger-sync 1.
async fn installs(env: &Env) -> Vec<String> {
    let tenants = vec![env.tenant("globex").await, env.tenant("initech").await, env.tenant("umbrella").await];
    for (plugin, count) in [("echo", 3), ("churn-radar", 2), ("ledger-sync", 1)] {
        for tenant in &tenants[..count] {
            env.install(tenant, &format!("nexus-labs/{plugin}"), json!({})).await;
        }
    }
    tenants
}

/// An anonymous search; `query` is the query string without `?`.
async fn search(env: &Env, query: &str) -> Value {
    let (status, body) = env.call("GET", &format!("/v1/catalog?{query}"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

/// The plugin names of a page, in order.
fn names(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_string()).collect()
}

async fn found(env: &Env, query: &str) -> Vec<String> {
    let page = search(env, query).await;
    assert_eq!(page["total"].as_u64(), Some(names(&page).len() as u64), "{query}: one page holds all: {page}");
    names(&page)
}

async fn refused(env: &Env, query: &str) -> (StatusCode, Option<String>) {
    let (status, body) = env.call("GET", &format!("/v1/catalog?{query}"), None, None).await;
    (status, body["error"]["code"].as_str().map(str::to_string))
}

fn listing<'a>(page: &'a Value, name: &str) -> &'a Value {
    page["items"].as_array().unwrap().iter().find(|l| l["name"] == name).unwrap()
}

#[test]
fn search_without_a_query_lists_every_plugin_most_installed_first() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        let by_name = ["chat-notifier", "churn-radar", "echo", "invoice-mailer", "ledger-sync", "pii-redactor"];
        assert_eq!(found(&env, "").await, [&by_name[..], &["tax-calculator"]].concat(), "no installs: by id");

        installs(&env).await;
        let page = search(&env, "").await;
        assert_eq!(
            names(&page),
            ["echo", "churn-radar", "ledger-sync", "chat-notifier", "invoice-mailer", "pii-redactor", "tax-calculator"]
        );
        assert_eq!((page["total"].as_u64(), &page["next_page"]), (Some(7), &Value::Null));
        assert_eq!(search(&env, "sort=popular").await, page);
        // Relevance without terms has nothing to rank by but popularity.
        assert_eq!(search(&env, "sort=relevance").await, page);

        let ledger = listing(&page, "ledger-sync");
        assert_eq!(ledger["id"], "nexus-labs/ledger-sync");
        assert_eq!(ledger["publisher"], "nexus-labs");
        assert_eq!(ledger["summary"], LEDGER_SYNC.summary);
        assert_eq!(ledger["categories"], json!(["finance", "billing"]));
        assert_eq!(ledger["capabilities"], json!(["config"]));
        assert_eq!(ledger["pricing_models"], json!(["subscription"]));
        assert_eq!(
            ledger["price_from"],
            json!({ "model": "subscription", "currency": "USD", "amount_minor": 900, "interval": "month", "meter": null })
        );
        assert_eq!(ledger["latest_version"], "0.1.0");
        assert_eq!(ledger["install_count"], 1);
        assert_eq!(ledger["featured"], false);
        assert!(ledger.get("featured_note").is_none() && ledger.get("delisted").is_none(), "{ledger}");
        let chat = listing(&page, "chat-notifier");
        assert_eq!(chat["capabilities"], json!(["log", "config", "secrets", "http", "usage"]));
        assert_eq!(chat["pricing_models"], json!(["free", "usage"]));
        assert_eq!(listing(&page, "echo")["price_from"], Value::Null, "every plan free");
        assert_eq!(listing(&page, "echo")["install_count"], 3);
    });
}

#[test]
fn a_listing_is_priced_by_the_plans_it_offers_now_not_by_its_manifest() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        let plans = "/v1/plugins/nexus-labs/echo/plans";
        let one_time = json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time",
                               "currency": "EUR", "price_minor": 4900 });
        let (status, body) = env.post(plans, &env.publisher, one_time).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // The filter, the models and the card's price follow the plan in the same commit.
        assert_eq!(found(&env, "pricing=one-time").await, ["echo"]);
        let echo = listing(&search(&env, "q=echo").await, "echo").clone();
        assert_eq!(echo["pricing_models"], json!(["free", "one-time"]));
        assert_eq!(
            echo["price_from"],
            json!({ "model": "one-time", "currency": "EUR", "amount_minor": 4900, "interval": null, "meter": null })
        );
        let (_, detail) = env.call("GET", "/v1/catalog/nexus-labs/echo", None, None).await;
        let keys: Vec<&str> = detail["plans"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["free", "lifetime"], "{detail}");

        // A cheaper subscription in the same currency becomes the lowest price.
        let monthly = json!({ "key": "monthly", "name": "Monthly", "model": "subscription", "currency": "EUR",
                              "price_minor": 900, "interval": "month" });
        assert_eq!(env.post(plans, &env.publisher, monthly).await.0, StatusCode::CREATED);
        let echo = listing(&search(&env, "q=echo").await, "echo").clone();
        assert_eq!(echo["pricing_models"], json!(["free", "one-time", "subscription"]));
        assert_eq!(echo["price_from"]["amount_minor"], 900);
        assert_eq!(echo["price_from"]["interval"], "month");

        // Retiring the paid plans leaves a free listing again.
        for key in ["lifetime", "monthly"] {
            let (status, body) = env.call("DELETE", &format!("{plans}/{key}"), Some(&env.publisher), None).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{key}: {body}");
        }
        assert_eq!(found(&env, "pricing=one-time").await, Vec::<String>::new());
        let echo = listing(&search(&env, "q=echo").await, "echo").clone();
        assert_eq!((&echo["pricing_models"], &echo["price_from"]), (&json!(["free"]), &Value::Null));
    });
}

#[test]
fn plans_added_at_once_leave_the_listing_priced_by_all_of_them() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        let plans = "/v1/plugins/nexus-labs/echo/plans";
        let added = futures_util::future::join_all((1..=8).map(|n| {
            let plan = json!({ "key": format!("pack-{n}"), "name": format!("Pack {n}"), "model": "one-time",
                               "currency": "EUR", "price_minor": 100 * (9 - n) });
            env.post(plans, &env.publisher, plan)
        }))
        .await;
        assert!(added.iter().all(|(status, _)| *status == StatusCode::CREATED), "{added:?}");
        let echo = listing(&search(&env, "q=echo").await, "echo").clone();
        assert_eq!(echo["pricing_models"], json!(["free", "one-time"]));
        // The cheapest of the eight, whichever committed last.
        assert_eq!(echo["price_from"]["amount_minor"], 100, "{echo}");
        let (_, detail) = env.call("GET", "/v1/catalog/nexus-labs/echo", None, None).await;
        assert_eq!(detail["plans"].as_array().map(Vec::len), Some(9), "{detail}");
    });
}

#[test]
fn every_query_term_must_match_in_the_name_summary_or_description_whatever_the_case() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        // In a name, a summary, a description; relevance ranks them in that order.
        assert_eq!(found(&env, "q=ledger").await, ["ledger-sync", "invoice-mailer", "churn-radar"]);
        assert_eq!(found(&env, "q=LEDGER%20Paid").await, ["ledger-sync", "invoice-mailer"]);
        assert_eq!(found(&env, "q=paid%20ledger").await, ["ledger-sync", "invoice-mailer"]);
        assert_eq!(found(&env, "q=Weekly").await, ["churn-radar"], "description only");
        assert_eq!(found(&env, "q=webhook").await, ["chat-notifier"], "a sample's description");
        assert_eq!(found(&env, "q=radar%20ledger").await, ["churn-radar"], "one term in the name, one in the text");
        assert_eq!(found(&env, "q=ledger%20webhook").await, Vec::<String>::new(), "each term must match");
        assert_eq!(found(&env, "q=nexus-labs").await.len(), 7, "the publisher is searched too");
        assert_eq!(found(&env, "q=crm").await, ["churn-radar"], "and the categories");

        // Words begin words: a prefix finds, a middle does not; punctuation (LIKE's and the
        // full-text syntaxes' wildcards and operators among it) only separates words.
        assert_eq!(found(&env, "q=led").await, ["ledger-sync", "invoice-mailer", "churn-radar"]);
        assert_eq!(found(&env, "q=edger").await, Vec::<String>::new());
        assert_eq!(found(&env, "q=%25").await.len(), 7, "no word left: everything");
        assert_eq!(found(&env, "q=%22ledger*%22%20OR%20x:*%20%26%20!y").await, Vec::<String>::new());
        assert_eq!(found(&env, "q=led%25sync").await, ["ledger-sync"], "two words: led and sync");
        assert_eq!(found(&env, "q=l_dger").await, Vec::<String>::new());

        // Relevance ties fall back to installs, then the id.
        assert_eq!(found(&env, "q=invoice").await, ["invoice-mailer", "chat-notifier", "ledger-sync"]);
        installs(&env).await;
        assert_eq!(found(&env, "q=invoice").await, ["invoice-mailer", "ledger-sync", "chat-notifier"]);
    });
}

#[test]
fn filters_narrow_by_category_pricing_capability_and_reject_unknown_values() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        installs(&env).await;
        assert_eq!(found(&env, "category=billing").await, ["ledger-sync", "invoice-mailer"]);
        assert_eq!(found(&env, "category=finance").await, ["ledger-sync", "tax-calculator"]);
        assert_eq!(found(&env, "category=support").await, Vec::<String>::new());
        assert_eq!(found(&env, "pricing=free").await, ["echo", "churn-radar", "chat-notifier"]);
        assert_eq!(found(&env, "pricing=subscription").await, ["ledger-sync", "pii-redactor"]);
        assert_eq!(found(&env, "pricing=usage").await, ["chat-notifier", "invoice-mailer", "tax-calculator"]);
        assert_eq!(found(&env, "pricing=one-time").await, Vec::<String>::new());
        // The manifest's older names are read as the plans' names.
        assert_eq!(found(&env, "pricing=flat").await, found(&env, "pricing=subscription").await);
        assert_eq!(found(&env, "pricing=per-unit").await, found(&env, "pricing=usage").await);
        assert_eq!(found(&env, "capability=secrets").await, ["chat-notifier", "invoice-mailer"]);
        assert_eq!(found(&env, "capability=http").await, ["chat-notifier"]);
        assert_eq!(found(&env, "capability=kv").await, ["tax-calculator"]);
        assert_eq!(found(&env, "capability=usage").await, ["chat-notifier", "pii-redactor", "tax-calculator"]);
        // Filters and terms combine.
        assert_eq!(found(&env, "q=invoice&category=billing").await, ["invoice-mailer", "ledger-sync"]);
        assert_eq!(found(&env, "q=ledger&pricing=free").await, ["churn-radar"]);
        assert_eq!(found(&env, "category=billing&capability=secrets&pricing=per-unit").await, ["invoice-mailer"]);
        assert_eq!(found(&env, "category=messaging&pricing=flat").await, Vec::<String>::new());

        let invalid = (StatusCode::BAD_REQUEST, Some("invalid_query".to_string()));
        for query in [
            "category=gardening",
            "category=Billing",
            "pricing=cheap",
            "capability=filesystem",
            "sort=random",
            "featured=maybe",
            "page=first",
            "colour=red",
        ] {
            assert_eq!(refused(&env, query).await, invalid, "{query}");
        }
    });
}

#[test]
fn sorts_give_newest_name_and_relevance_orders() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        installs(&env).await;
        let newest: Vec<&str> = ALL.iter().rev().copied().collect();
        assert_eq!(found(&env, "sort=newest").await, newest);
        assert_eq!(
            found(&env, "sort=name").await,
            ["chat-notifier", "churn-radar", "echo", "invoice-mailer", "ledger-sync", "pii-redactor", "tax-calculator"]
        );
        // With terms the default is relevance; an explicit sort overrides it.
        assert_eq!(found(&env, "q=ledger").await, ["ledger-sync", "invoice-mailer", "churn-radar"]);
        assert_eq!(found(&env, "q=ledger&sort=relevance").await, ["ledger-sync", "invoice-mailer", "churn-radar"]);
        assert_eq!(found(&env, "q=ledger&sort=name").await, ["churn-radar", "invoice-mailer", "ledger-sync"]);
        assert_eq!(found(&env, "q=ledger&sort=newest").await, ["churn-radar", "invoice-mailer", "ledger-sync"]);
        assert_eq!(found(&env, "q=ledger&sort=popular").await, ["churn-radar", "ledger-sync", "invoice-mailer"]);
        // A name hit outranks summary hits with more installs; equal hits go by installs.
        assert_eq!(found(&env, "q=invoice").await, ["invoice-mailer", "ledger-sync", "chat-notifier"]);
        assert_eq!(found(&env, "q=each").await, ["echo", "invoice-mailer"]);
        assert_eq!(found(&env, "q=mailer%20invoice").await, ["invoice-mailer"]);
    });
}

#[test]
fn pages_carry_the_total_and_the_next_page() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        installs(&env).await;
        let pages = [
            (1, vec!["echo", "churn-radar"], json!(2)),
            (2, vec!["ledger-sync", "chat-notifier"], json!(3)),
            (3, vec!["invoice-mailer", "pii-redactor"], json!(4)),
            (4, vec!["tax-calculator"], Value::Null),
            (5, vec![], Value::Null),
        ];
        for (page, expected, next) in pages {
            let body = search(&env, &format!("per_page=2&page={page}")).await;
            assert_eq!(names(&body), expected, "page {page}");
            assert_eq!((body["total"].as_u64(), &body["next_page"]), (Some(7), &next), "page {page}");
        }
        let body = search(&env, "q=ledger&per_page=2&page=2").await;
        assert_eq!(
            (names(&body), body["total"].as_u64(), &body["next_page"]),
            (vec!["churn-radar".to_string()], Some(3), &Value::Null)
        );
        assert_eq!(names(&search(&env, "per_page=1").await), ["echo"]);
        assert_eq!(search(&env, "per_page=100").await["total"], 7);
        assert_eq!(search(&env, "page=0&per_page=2").await, search(&env, "page=1&per_page=2").await);
        // The last page a u32 can name: empty, and no next page rather than an overflow.
        let last = search(&env, &format!("page={}&per_page=100", u32::MAX)).await;
        assert_eq!((names(&last), last["total"].as_u64(), &last["next_page"]), (vec![], Some(7), &Value::Null));

        let invalid = (StatusCode::BAD_REQUEST, Some("invalid_query".to_string()));
        for query in ["per_page=0", "per_page=101", "per_page=-1", "per_page=ten"] {
            assert_eq!(refused(&env, query).await, invalid, "{query}");
        }
    });
}

async fn audit(env: &Env, action: &str) -> Vec<Value> {
    let (status, body) = env.get(&format!("/v1/audit?action={action}"), &env.operator).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn code(response: &(StatusCode, Value)) -> (StatusCode, Option<&str>) {
    (response.0, response.1["error"]["code"].as_str())
}

#[test]
fn operators_feature_listings_and_nobody_else_may() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        let tenant = env.tenant("globex").await;
        let uri = "/v1/catalog/nexus-labs/churn-radar/feature";
        let note = json!({ "reason": "Editor's pick for June" });

        assert_eq!(
            code(&env.post(uri, &env.publisher, note.clone()).await),
            (StatusCode::FORBIDDEN, Some("forbidden"))
        );
        assert_eq!(code(&env.post(uri, &tenant, note.clone()).await), (StatusCode::FORBIDDEN, Some("forbidden")));
        let anonymous = env.call("POST", uri, None, Some(&note.to_string())).await;
        assert_eq!(code(&anonymous), (StatusCode::UNAUTHORIZED, Some("unauthenticated")));
        assert_eq!(found(&env, "featured=true").await, Vec::<String>::new(), "refusals changed nothing");
        assert!(audit(&env, "listing.featured").await.is_empty());
        let missing = env.post("/v1/catalog/nexus-labs/nothing/feature", &env.operator, note.clone()).await;
        assert_eq!(code(&missing), (StatusCode::NOT_FOUND, Some("not_found")));

        let (status, featured) = env.post(uri, &env.operator, note.clone()).await;
        assert_eq!(status, StatusCode::OK, "{featured}");
        assert_eq!(
            (&featured["featured"], &featured["featured_note"]),
            (&json!(true), &json!("Editor's pick for June"))
        );
        assert_eq!(found(&env, "featured=true").await, ["churn-radar"]);
        assert_eq!(found(&env, "featured=false").await.len(), 6);
        assert!(!found(&env, "featured=false").await.contains(&"churn-radar".to_string()));
        assert_eq!(found(&env, "featured=true&category=crm").await, ["churn-radar"]);
        assert_eq!(found(&env, "featured=true&category=billing").await, Vec::<String>::new());
        let everything = search(&env, "").await;
        assert_eq!(listing(&everything, "churn-radar")["featured"], true);
        assert_eq!(listing(&everything, "echo")["featured"], false);
        let (_, detail) = env.call("GET", "/v1/catalog/nexus-labs/churn-radar", None, None).await;
        assert_eq!((&detail["featured"], &detail["featured_note"]), (&json!(true), &json!("Editor's pick for June")));

        let entries = audit(&env, "listing.featured").await;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["target"], "nexus-labs/churn-radar");
        let placement = entries[0]["detail"]["placement"].as_str().unwrap();
        assert!(placement.starts_with("fp_"), "{}", entries[0]);
        assert_eq!(
            entries[0]["detail"],
            json!({ "placement": placement, "note": "Editor's pick for June",
                    "starts_at": entries[0]["detail"]["starts_at"], "ends_at": null })
        );
        assert!(entries[0]["actor"].as_str().unwrap().starts_with("operator:"), "{}", entries[0]);

        let unfeature = env.call("DELETE", uri, Some(&env.publisher), None).await;
        assert_eq!(code(&unfeature), (StatusCode::FORBIDDEN, Some("forbidden")));
        let (status, unfeatured) = env.call("DELETE", uri, Some(&env.operator), None).await;
        assert_eq!(status, StatusCode::OK, "{unfeatured}");
        assert_eq!(unfeatured["featured"], false);
        assert!(unfeatured.get("featured_note").is_none(), "{unfeatured}");
        assert_eq!(found(&env, "featured=true").await, Vec::<String>::new());
        assert_eq!(audit(&env, "listing.unfeatured").await[0]["target"], "nexus-labs/churn-radar");
    });
}

#[test]
fn a_delisted_plugin_leaves_search_and_new_installs_but_its_publisher_sees_why() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        let globex = env.tenant("globex").await;
        let initech = env.tenant("initech").await;
        let existing = env.install(&globex, "nexus-labs/echo", json!({})).await;
        let other =
            env.market.registry.create_publisher(&"acme".parse().unwrap(), "Acme", "test").await.unwrap().secret;
        let uri = "/v1/catalog/nexus-labs/echo/delist";
        let reason = "Sends payloads to a host it does not declare";

        let by_publisher = env.post(uri, &env.publisher, json!({ "reason": reason })).await;
        assert_eq!(code(&by_publisher), (StatusCode::FORBIDDEN, Some("forbidden")));
        let blank = env.post(uri, &env.operator, json!({ "reason": "  " })).await;
        assert_eq!(code(&blank), (StatusCode::BAD_REQUEST, Some("invalid_request")));
        assert!(found(&env, "").await.contains(&"echo".to_string()), "refusals changed nothing");

        let (status, delisted) = env.post(uri, &env.operator, json!({ "reason": reason })).await;
        assert_eq!(status, StatusCode::OK, "{delisted}");
        assert_eq!(delisted["delisted"]["reason"], reason);
        assert!(delisted["delisted"]["at"].as_i64().is_some_and(|at| at > 0), "{delisted}");

        // Gone for tenants and the public: from search and as a page.
        let page = search(&env, "").await;
        assert_eq!(page["total"], 6);
        assert!(!names(&page).contains(&"echo".to_string()), "{page}");
        assert_eq!(found(&env, "q=echo").await, Vec::<String>::new());
        assert_eq!(found(&env, "category=developer-tools").await, Vec::<String>::new());
        let detail = "/v1/catalog/nexus-labs/echo";
        assert_eq!(code(&env.get(detail, &globex).await), (StatusCode::NOT_FOUND, Some("not_found")));
        assert_eq!(code(&env.call("GET", detail, None, None).await), (StatusCode::NOT_FOUND, Some("not_found")));
        assert_eq!(code(&env.get(detail, &other).await), (StatusCode::NOT_FOUND, Some("not_found")));

        // Its publisher and operators still see it, with the reason.
        for token in [&env.publisher, &env.operator] {
            let (status, body) = env.get(detail, token).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["delisted"]["reason"], reason);
        }
        let (status, own) = env.get("/v1/publishers/nexus-labs/listings", &env.publisher).await;
        assert_eq!(status, StatusCode::OK, "{own}");
        let own = own["items"].as_array().unwrap();
        let ids: Vec<&str> = own.iter().map(|l| l["name"].as_str().unwrap()).collect();
        let mut expected = ALL.to_vec();
        expected.sort_unstable();
        assert_eq!(ids, expected);
        let echo = own.iter().find(|l| l["name"] == "echo").unwrap();
        assert_eq!(echo["delisted"]["reason"], reason);
        assert!(own.iter().filter(|l| l["name"] != "echo").all(|l| l.get("delisted").is_none()));
        let listings = "/v1/publishers/nexus-labs/listings";
        assert_eq!(code(&env.get(listings, &globex).await), (StatusCode::FORBIDDEN, Some("forbidden")));
        assert_eq!(code(&env.get(listings, &other).await), (StatusCode::FORBIDDEN, Some("namespace_not_owned")));

        // New installs are refused; the existing one keeps running.
        let (_, preview) = env.get("/v1/catalog/nexus-labs/echo/consent", &initech).await;
        let install = json!({ "plugin": "nexus-labs/echo", "consent": consent_for(&preview) });
        let refused = env.post("/v1/installs", &initech, install).await;
        assert_eq!(code(&refused), (StatusCode::CONFLICT, Some("plugin_delisted")));
        let (_, listed) = env.get("/v1/installs", &globex).await;
        assert_eq!((&listed["items"][0]["id"], &listed["items"][0]["status"]), (&existing["id"], &json!("active")));
        let (status, receipt) = env.post("/v1/events", &globex, json!({ "type": "ping", "payload": {} })).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["deliveries"][0]["outcome"], "ok", "{receipt}");

        let entries = audit(&env, "listing.delisted").await;
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (&entries[0]["target"], &entries[0]["detail"]),
            (&json!("nexus-labs/echo"), &json!({ "reason": reason }))
        );

        // Listed again: back everywhere, installable.
        let relist = env.call("DELETE", uri, Some(&env.publisher), None).await;
        assert_eq!(code(&relist), (StatusCode::FORBIDDEN, Some("forbidden")));
        let (status, relisted) = env.call("DELETE", uri, Some(&env.operator), None).await;
        assert_eq!(status, StatusCode::OK, "{relisted}");
        assert!(relisted.get("delisted").is_none(), "{relisted}");
        assert_eq!(search(&env, "").await["total"], 7);
        assert_eq!(found(&env, "q=echo").await, ["echo"]);
        let (status, body) = env.call("GET", detail, None, None).await;
        assert_eq!((status, &body["install_count"]), (StatusCode::OK, &json!(1)));
        env.install(&initech, "nexus-labs/echo", json!({})).await;
        assert_eq!(audit(&env, "listing.relisted").await[0]["target"], "nexus-labs/echo");
        let missing =
            env.post("/v1/catalog/nexus-labs/nothing/delist", &env.operator, json!({ "reason": reason })).await;
        assert_eq!(code(&missing), (StatusCode::NOT_FOUND, Some("not_found")));
    });
}

async fn yank(env: &Env, plugin: &str, version: &str) {
    let uri = format!("/v1/plugins/nexus-labs/{plugin}/versions/{version}/yank");
    let (status, body) = env.post(&uri, &env.publisher, json!({ "reason": "Posts refunds twice" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn versions(detail: &Value) -> Vec<String> {
    detail["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap().to_string()).collect()
}

#[test]
fn listings_follow_new_and_yanked_versions() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        let first = listing(&search(&env, "q=ledger-sync").await, "ledger-sync").clone();
        let second = Extra {
            summary: "Post paid invoices and refunds to your general ledger hourly",
            categories: &["finance", "billing", "analytics"],
            ..LEDGER_SYNC
        };
        env.publish_manifest(nexus_sample_plugins::ECHO, &second.manifest("0.2.0")).await.unwrap();

        let page = search(&env, "q=hourly").await;
        assert_eq!(names(&page), ["ledger-sync"]);
        let updated = listing(&page, "ledger-sync");
        assert_eq!((&updated["latest_version"], &updated["summary"]), (&json!("0.2.0"), &json!(second.summary)));
        assert_eq!(updated["created_at"], first["created_at"], "listed when first published");
        assert!(updated["updated_at"].as_i64() >= first["updated_at"].as_i64());
        assert_eq!(found(&env, "q=night").await, Vec::<String>::new(), "the old summary is gone");
        assert_eq!(found(&env, "category=analytics").await, ["churn-radar", "ledger-sync"]);
        assert_eq!(found(&env, "sort=newest").await[2], "ledger-sync", "a new version is not a new listing");

        // A pre-release is not what a tenant gets by default, so it does not become the listing.
        let beta = Extra { summary: "Streaming sync, in beta", ..LEDGER_SYNC };
        env.publish_manifest(nexus_sample_plugins::ECHO, &beta.manifest("0.3.0-beta.1")).await.unwrap();
        assert_eq!(found(&env, "q=streaming").await, Vec::<String>::new());
        assert_eq!(listing(&search(&env, "q=ledger-sync").await, "ledger-sync")["latest_version"], "0.2.0");

        // Yanking the newest falls back to the one before, text and all.
        yank(&env, "ledger-sync", "0.2.0").await;
        let back = listing(&search(&env, "q=ledger-sync").await, "ledger-sync").clone();
        assert_eq!((&back["latest_version"], &back["summary"]), (&json!("0.1.0"), &json!(LEDGER_SYNC.summary)));
        assert_eq!(found(&env, "q=hourly").await, Vec::<String>::new());
        assert_eq!(found(&env, "category=analytics").await, ["churn-radar"]);
        let (_, detail) = env.call("GET", "/v1/catalog/nexus-labs/ledger-sync", None, None).await;
        assert_eq!(versions(&detail), ["0.3.0-beta.1", "0.1.0"], "yanked versions are not offered");

        // Nothing installable left: out of search, still known to its publisher.
        yank(&env, "ledger-sync", "0.1.0").await;
        yank(&env, "ledger-sync", "0.3.0-beta.1").await;
        assert_eq!(found(&env, "q=ledger").await, ["invoice-mailer", "churn-radar"]);
        assert_eq!(search(&env, "").await["total"], 6);
        assert_eq!(found(&env, "category=finance").await, ["tax-calculator"]);
        let (_, own) = env.get("/v1/publishers/nexus-labs/listings", &env.publisher).await;
        let own = own["items"].as_array().unwrap().iter().find(|l| l["name"] == "ledger-sync").unwrap().clone();
        assert_eq!(own["latest_version"], "");
        let (status, detail) = env.call("GET", "/v1/catalog/nexus-labs/ledger-sync", None, None).await;
        assert_eq!((status, versions(&detail)), (StatusCode::OK, Vec::<String>::new()));

        // A new version lists it again.
        env.publish_manifest(nexus_sample_plugins::ECHO, &LEDGER_SYNC.manifest("0.4.0")).await.unwrap();
        assert_eq!(found(&env, "q=ledger").await, ["ledger-sync", "invoice-mailer", "churn-radar"]);
        assert_eq!(listing(&search(&env, "q=ledger-sync").await, "ledger-sync")["latest_version"], "0.4.0");
    });
}

#[test]
fn the_listing_detail_shows_capabilities_with_reasons_pricing_and_installable_versions() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        let (status, mailer) = env.call("GET", "/v1/catalog/nexus-labs/invoice-mailer", None, None).await;
        assert_eq!(status, StatusCode::OK, "{mailer}");
        assert_eq!(mailer["id"], "nexus-labs/invoice-mailer");
        assert_eq!(mailer["summary"], INVOICE_MAILER.summary);
        assert_eq!(mailer["description"], "");
        assert_eq!(mailer["license"], "MIT");
        assert_eq!(mailer["event_types"], json!(["*"]));
        assert_eq!(mailer["requested_capabilities"], json!({ "secrets": { "reason": INVOICE_MAILER.capability.1 } }));
        let plan = json!({ "id": "per-email", "name": "Pay per email", "model": "usage", "meter": "emails-sent",
                           "unit-amount-minor": 3, "currency": "EUR", "included-units": 0 });
        assert_eq!(mailer["pricing"], json!([plan]));
        assert_eq!(mailer["versions"].as_array().unwrap().len(), 1);
        let version = &mailer["versions"][0];
        assert_eq!(
            (&version["version"], &version["contract"], &version["signed"]),
            (&json!("0.1.0"), &json!("1.0"), &json!(false))
        );
        assert!(version["published_at"].as_i64().is_some_and(|at| at == mailer["created_at"].as_i64().unwrap()));

        let (status, chat) = env.call("GET", "/v1/catalog/nexus-labs/chat-notifier", None, None).await;
        assert_eq!(status, StatusCode::OK, "{chat}");
        assert!(chat["description"].as_str().unwrap().starts_with("Formats `invoice.paid`"), "{chat}");
        assert_eq!(chat["repository"], "https://github.com/nexus-labs/chat-notifier");
        let capabilities = chat["requested_capabilities"].as_object().unwrap();
        let mut keys: Vec<&str> = capabilities.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["config", "http", "log", "secrets", "usage"]);
        assert_eq!(
            capabilities["secrets"],
            json!({ "reason": "Reads the webhook URL, which carries your chat's access token" })
        );
        assert_eq!(
            capabilities["http"],
            json!({ "reason": "Posts each message to your chat's incoming webhook", "hosts": [
                { "host": "hooks.slack.com", "reason": "Slack incoming webhooks" },
                { "host": "*.webhook.office.com", "reason": "Microsoft Teams incoming webhooks" },
            ] })
        );
        assert_eq!(chat["pricing"][0], json!({ "id": "free", "name": "Free", "model": "free" }));
        assert_eq!(chat["pricing"][1]["included-units"], 1000);
        let (_, pii) = env.call("GET", "/v1/catalog/nexus-labs/pii-redactor", None, None).await;
        assert_eq!(
            pii["pricing"],
            json!([{ "id": "team", "name": "Team", "model": "subscription", "amount-minor": 2900, "currency": "USD",
                     "interval": "month" }])
        );

        // Newest first, yanked ones left out.
        let (name, path, manifest) = nexus_sample_plugins::PUBLISHABLE[1];
        env.publish_sample(name, path, manifest, "0.2.0").await;
        env.publish_sample(name, path, manifest, "0.3.0").await;
        yank(&env, "pii-redactor", "0.2.0").await;
        let (_, pii) = env.call("GET", "/v1/catalog/nexus-labs/pii-redactor", None, None).await;
        assert_eq!(versions(&pii), ["0.3.0", "0.1.0"]);
        assert_eq!(pii["latest_version"], "0.3.0");

        let missing = env.call("GET", "/v1/catalog/nexus-labs/nothing", None, None).await;
        assert_eq!(code(&missing), (StatusCode::NOT_FOUND, Some("not_found")));
    });
}

#[test]
fn facets_count_each_category_and_plan_model_under_the_other_filters() {
    on_both(|postgres| async move {
        let env = catalog(postgres).await;
        let facets = |page: &Value| page["facets"].clone();
        let everything = search(&env, "").await;
        assert_eq!(
            facets(&everything),
            json!({
                "categories": { "analytics": 1, "billing": 2, "compliance": 1, "crm": 1, "developer-tools": 1,
                                "finance": 2, "marketing": 0, "messaging": 2, "notifications": 1, "productivity": 0,
                                "security": 1, "support": 0, "tax": 1 },
                "pricing": { "free": 3, "one-time": 0, "subscription": 2, "usage": 3 },
            })
        );
        // A category's own filter does not narrow the category counts; it narrows pricing's.
        let billing = search(&env, "category=billing").await;
        assert_eq!(facets(&billing)["categories"], facets(&everything)["categories"]);
        assert_eq!(facets(&billing)["pricing"], json!({ "free": 0, "one-time": 0, "subscription": 1, "usage": 1 }));
        // Words narrow both; pricing narrows the categories.
        let invoices = search(&env, "q=invoice&pricing=usage").await;
        assert_eq!(names(&invoices), ["invoice-mailer", "chat-notifier"]);
        let categories = facets(&invoices)["categories"].clone();
        let counted: Vec<(&str, i64)> = categories
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, n)| n.as_i64() != Some(0))
            .map(|(c, n)| (c.as_str(), n.as_i64().unwrap()))
            .collect();
        assert_eq!(counted, [("billing", 1), ("messaging", 2), ("notifications", 1)]);
        assert_eq!(facets(&invoices)["pricing"], json!({ "free": 1, "one-time": 0, "subscription": 1, "usage": 2 }));

        // Recently updated first: a new version moves a listing to the front.
        let manifest = super::common::manifest_of("echo").replace("version = \"0.1.0\"", "version = \"0.1.1\"");
        env.publish_manifest(nexus_sample_plugins::ECHO, &manifest).await.unwrap();
        assert_eq!(names(&search(&env, "sort=updated&per_page=2").await), ["echo", "churn-radar"]);
        let (status, body) = env.call("GET", "/v1/catalog?sort=best-match", None, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
    });
}
