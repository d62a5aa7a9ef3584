//! Development versions through the API (`POST /v1/publish/dev`), on SQLite and PostgreSQL:
//! numbered by the registry without taking the release number, one number per publish when
//! several come at once, refused without a development tenant, invisible and unresolvable
//! for everyone but the publisher's development tenants, pruned to the newest few and those
//! installs run; and the partner's view of the usage so far (`GET /v1/plugins/{p}/{n}/usage`).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use super::common::{BOUNDARY, Env, consent_for, form, manifest_of, on_both};
use nexus_marketplace::accounts::{Caller, TenantId};

const ECHO: &str = "nexus-labs/echo";

async fn publish_dev(env: &Env, token: &str, version: &str) -> (StatusCode, Value) {
    let manifest = manifest_of("echo").replacen("version = \"0.1.0\"", &format!("version = \"{version}\""), 1);
    let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
    let request = Request::post("/v1/publish/dev")
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(form(&[("manifest", manifest.as_bytes()), ("component", &component)])))
        .unwrap();
    let (status, _, bytes) = env.raw(request).await;
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// The development versions the registry holds for echo, oldest first.
async fn dev_versions(env: &Env) -> Vec<String> {
    let mut versions: Vec<semver::Version> =
        sqlx::query_scalar::<_, String>("SELECT version FROM plugin_versions WHERE plugin_id = $1")
            .bind(ECHO)
            .fetch_all(&env.market.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|v| v.parse().unwrap())
            .filter(|v: &semver::Version| v.pre.as_str().starts_with("dev."))
            .collect();
    versions.sort();
    versions.iter().map(ToString::to_string).collect()
}

async fn install_at(env: &Env, tenant: &str, requirement: &str) -> (StatusCode, Value) {
    let (_, consent) = env.get(&format!("/v1/catalog/{ECHO}/consent"), tenant).await;
    let body = json!({ "plugin": ECHO, "requirement": requirement, "consent": consent_for(&consent) });
    env.post("/v1/installs", tenant, body).await
}

#[test]
fn development_versions_are_numbered_private_and_pruned() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = env.tenant("globex").await;
        let initech = env.tenant("initech").await;

        // No development tenant yet: refused, nothing stored.
        let (status, body) = publish_dev(&env, &env.publisher, "0.3.0").await;
        assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "dev_tenant_missing"), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("nexus operator dev-tenant nexus-labs <tenant>"));
        assert_eq!(dev_versions(&env).await, Vec::<String>::new());

        // Only operators link one.
        let globex_id: TenantId = "globex".parse().unwrap();
        let publisher = Caller::Publisher(env.publisher_credential.clone());
        let refused = nexus_marketplace::dev_versions::link(&env.market, &publisher, "nexus-labs", &globex_id).await;
        assert!(refused.is_err());
        let operator = Caller::Operator { token_id: "tests".into() };
        for _ in 0..2 {
            nexus_marketplace::dev_versions::link(&env.market, &operator, "nexus-labs", &globex_id).await.unwrap();
        }
        assert_eq!(nexus_marketplace::dev_versions::tenants_of(&env.market, "nexus-labs").await.unwrap(), ["globex"]);

        let (status, first) = publish_dev(&env, &env.publisher, "0.3.0").await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!((&first["version"], &first["dev_tenants"]), (&json!("0.3.0-dev.1"), &json!(["globex"])));
        // Four at once: four distinct numbers.
        let answers = futures_util::future::join_all((0..4).map(|_| publish_dev(&env, &env.publisher, "0.3.0"))).await;
        let mut numbered: Vec<String> = answers
            .iter()
            .map(|(status, body)| {
                assert_eq!(*status, StatusCode::CREATED, "{body}");
                body["version"].as_str().unwrap().to_string()
            })
            .collect();
        numbered.sort();
        assert_eq!(numbered, ["0.3.0-dev.2", "0.3.0-dev.3", "0.3.0-dev.4", "0.3.0-dev.5"]);
        // The newest three are kept (each publish pruned what fell out of them).
        assert_eq!(dev_versions(&env).await, ["0.3.0-dev.3", "0.3.0-dev.4", "0.3.0-dev.5"]);

        // Never listed, never resolved for the public.
        let (_, versions) = env.call("GET", &format!("/v1/plugins/{ECHO}/versions"), None, None).await;
        let listed: Vec<&str> =
            versions["items"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
        assert_eq!(listed, ["0.1.0"]);
        let (status, body) =
            env.call("GET", &format!("/v1/plugins/{ECHO}/resolve?req=%3D0.3.0-dev.5"), None, None).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "no_matching_version"), "{body}");
        let (_, detail) = env.call("GET", &format!("/v1/catalog/{ECHO}"), None, None).await;
        assert_eq!(detail["latest_version"], "0.1.0", "{detail}");

        // Another tenant cannot have one, even by its exact name; the development tenant can.
        let (status, body) = install_at(&env, &initech, "=0.3.0-dev.5").await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "no_matching_version"), "{body}");
        let (status, body) = install_at(&env, &initech, ">=0.3.0-dev.1").await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "no_matching_version"), "{body}");
        let (status, install) = install_at(&env, &globex, "=0.3.0-dev.4").await;
        assert_eq!(status, StatusCode::CREATED, "{install}");
        assert_eq!(install["version"], "0.3.0-dev.4");
        let id = install["id"].as_str().unwrap().to_string();

        // Three more: the installed one stays, the rest beyond the newest three go.
        for n in 6..=8 {
            let (status, body) = publish_dev(&env, &env.publisher, "0.3.0").await;
            assert_eq!(
                (status, body["version"].as_str().unwrap()),
                (StatusCode::CREATED, format!("0.3.0-dev.{n}").as_str())
            );
        }
        assert_eq!(dev_versions(&env).await, ["0.3.0-dev.4", "0.3.0-dev.6", "0.3.0-dev.7", "0.3.0-dev.8"]);
        // By its name, a development version exists for its publisher, operators and the
        // development tenants only; for anyone else it is not found, bytes included.
        let named = format!("/v1/plugins/{ECHO}/versions/0.3.0-dev.8");
        for (token, expected) in [
            (None, StatusCode::NOT_FOUND),
            (Some(initech.as_str()), StatusCode::NOT_FOUND),
            (Some(globex.as_str()), StatusCode::OK),
            (Some(env.publisher.as_str()), StatusCode::OK),
            (Some(env.operator.as_str()), StatusCode::OK),
        ] {
            let (status, body) = env.call("GET", &named, token, None).await;
            assert_eq!(status, expected, "{token:?}: {body}");
            let (status, _, _) = env.raw(Request::get(format!("{named}/component")).body(Body::empty()).unwrap()).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        let (status, record) = env.call("GET", &named, Some(&env.publisher), None).await;
        assert_eq!((status, &record["version"]), (StatusCode::OK, &json!("0.3.0-dev.8")), "{record}");
        // The install moves when its requirement names the newer one.
        let (status, moved) = env
            .call("PATCH", &format!("/v1/installs/{id}"), Some(&globex), Some(r#"{"requirement": "=0.3.0-dev.8"}"#))
            .await;
        assert_eq!((status, &moved["version"]), (StatusCode::OK, &json!("0.3.0-dev.8")), "{moved}");
        let event = json!({ "id": "evt-dev", "type": "order.created", "payload": { "n": 1 } });
        let (status, receipt) = env.post("/v1/events", &globex, event).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["deliveries"][0]["outcome"], "ok", "{receipt}");

        // The release number stays free; a release cannot take a development name.
        let (status, body) = publish_release(&env, "0.4.0-dev.1").await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "version_reserved_for_dev"), "{body}");
        let (status, body) = publish_release(&env, "0.3.0").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // The exact development requirement keeps the install where it is.
        let (_, still) = env.get(&format!("/v1/installs/{id}"), &globex).await;
        assert_eq!(still["version"], "0.3.0-dev.8");
        // Another publisher cannot publish in nexus-labs' name.
        let other = env.market.registry.create_publisher(&"acme".parse().unwrap(), "Acme", "test").await.unwrap();
        let (status, body) = publish_dev(&env, &other.secret, "0.3.0").await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "namespace_not_owned"), "{body}");
    });
}

/// A publisher sees every live install of its plugin with its usage so far and what it
/// would be charged, and totals per currency; nobody else does.
#[test]
fn partners_see_the_usage_so_far_of_each_install() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let tax = "nexus-labs/tax-calculator";
        let (status, empty) = env.get(&format!("/v1/plugins/{tax}/usage"), &env.publisher).await;
        assert_eq!(status, StatusCode::OK, "{empty}");
        assert_eq!((&empty["installs"], &empty["totals"]), (&json!([]), &json!([])));

        let mut tenants = Vec::new();
        for (id, events) in [("globex", 3), ("initech", 1)] {
            let token = env.tenant(id).await;
            env.install(&token, tax, json!({ "config": { "rates": "DE=1900" } })).await;
            for n in 0..events {
                let payload =
                    json!({ "order_id": format!("o-{n}"), "amount_minor": 1000, "currency": "EUR", "region": "DE" });
                let event = json!({ "id": format!("evt-{id}-{n}"), "type": "order.created", "payload": payload });
                let (status, receipt) = env.post("/v1/events", &token, event).await;
                assert_eq!((status, &receipt["deliveries"][0]["outcome"]), (StatusCode::OK, &json!("ok")), "{receipt}");
            }
            tenants.push(token);
        }
        let (status, usage) = env.get(&format!("/v1/plugins/{tax}/usage"), &env.publisher).await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        let installs = usage["installs"].as_array().unwrap();
        let figures: Vec<(&str, &Value, &Value, &Value)> = installs
            .iter()
            .map(|i| (i["tenant"].as_str().unwrap(), &i["meter"], &i["units"], &i["estimate_minor"]))
            .collect();
        assert_eq!(
            figures,
            [
                ("globex", &json!("tax-calculations"), &json!(3), &json!(6)),
                ("initech", &json!("tax-calculations"), &json!(1), &json!(2)),
            ],
            "{usage}"
        );
        assert_eq!(
            usage["totals"],
            json!([{ "currency": "EUR", "installs": 2, "units": 4, "billable_units": 4, "estimate_minor": 8 }])
        );
        // Each figure is the one its tenant sees.
        let globex_install = installs[0]["install"].as_str().unwrap();
        let (_, own) = env.get(&format!("/v1/installs/{globex_install}/usage"), &tenants[0]).await;
        assert_eq!((&own["units"], &own["estimate_minor"]), (&json!(3), &json!(6)), "{own}");
        // Tenants do not see it; an unknown plugin is not found.
        let (status, body) = env.get(&format!("/v1/plugins/{tax}/usage"), &tenants[0]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = env.get("/v1/plugins/nexus-labs/no-such-plugin/usage", &env.publisher).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");
    });
}

/// Publishes echo's component as a release of `version` through `POST /v1/publish`.
async fn publish_release(env: &Env, version: &str) -> (StatusCode, Value) {
    let manifest = manifest_of("echo").replacen("version = \"0.1.0\"", &format!("version = \"{version}\""), 1);
    let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
    let request = Request::post("/v1/publish")
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", env.publisher))
        .body(Body::from(form(&[("manifest", manifest.as_bytes()), ("component", &component)])))
        .unwrap();
    let (status, _, bytes) = env.raw(request).await;
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}
