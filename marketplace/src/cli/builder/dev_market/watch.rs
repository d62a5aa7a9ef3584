//! What `nexus dev --marketplace` shows of each delivery to the development tenant's
//! install as it happens: outcome, logs, data and actions, KV changes (local marketplace)
//! and the usage with what it adds to the period's charge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nexus_host::{KvScope, KvStore};
use serde_json::Value;

use super::{LOCAL_TENANT, Target};
use crate::cli::output;

/// Prints every new delivery to `install` as it happens, oldest first, until aborted.
pub(super) async fn watch(target: Arc<Target>, install: String) {
    let client = reqwest::Client::new();
    let mut seen = std::collections::HashSet::new();
    let mut first = true;
    let mut kv = kv_data(&target, &install).await;
    let mut estimate = usage_estimate(&target, &client, &install).await;
    loop {
        let page = target
            .send(
                client.get(target.url(&format!("/v1/installs/{install}/invocations?per_page=50"))),
                &target.tenant_token,
            )
            .await;
        if let Ok(page) = page {
            let mut fresh: Vec<Value> = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|record| record["id"].as_str().is_some_and(|id| seen.insert(id.to_string())))
                .cloned()
                .collect();
            fresh.reverse();
            // What ran before the session started is history, not news.
            if !first && !fresh.is_empty() {
                let kv_now = kv_data(&target, &install).await;
                let estimate_now = usage_estimate(&target, &client, &install).await;
                for record in &fresh {
                    print_delivery(record);
                }
                print_kv_changes(&kv, &kv_now);
                print_charge(&estimate, &estimate_now);
                kv = kv_now;
                estimate = estimate_now;
            }
            first = false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One delivery, as `nexus plugin test` shows a case: plugin text escaped and indented, so
/// nothing it writes reads as the CLI's own line.
fn print_delivery(record: &Value) {
    let text = |field: &str| output::shown(record[field].as_str().unwrap_or_default());
    let micros = record["duration_us"].as_u64().unwrap_or(0);
    println!(
        "event {} {} -> {} in {} ({})",
        text("event_type"),
        text("event_id"),
        text("outcome"),
        output::duration(Duration::from_micros(micros)),
        text("version")
    );
    if let Some(error) = record["error"].as_str() {
        println!("    error  {}", output::shown(error));
    }
    for line in record["logs"].as_array().into_iter().flatten() {
        println!(
            "    log {:<5} {}",
            line["level"].as_str().unwrap_or_default(),
            output::shown(line["message"].as_str().unwrap_or_default())
        );
    }
    if let Some(data) = record["data"].as_str() {
        println!("    data   {}", output::shown(data));
    }
    for action in record["actions"].as_array().into_iter().flatten() {
        println!(
            "    action {} {}",
            output::shown(action["kind"].as_str().unwrap_or_default()),
            output::shown(action["payload"].as_str().unwrap_or_default())
        );
    }
    for (meter, units) in record["usage"].as_object().into_iter().flatten() {
        println!("    usage  {} {units}", output::shown(meter));
    }
    if record["kv_writes"].as_i64().unwrap_or(0) > 0 {
        println!("    kv     {} write(s)", record["kv_writes"]);
    }
}

/// The install's whole KV data, on a local marketplace (another's is not readable).
async fn kv_data(target: &Target, install: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let market = target.local.as_ref()?;
    let store = crate::kv::SqlKv::new(market.db.clone());
    let scope = KvScope { tenant: LOCAL_TENANT.into(), install: install.into() };
    let mut data = BTreeMap::new();
    for key in store.list_keys(&scope, "").await.ok()? {
        if let Some(value) = store.get(&scope, &key).await.ok()? {
            data.insert(key, value);
        }
    }
    Some(data)
}

fn print_kv_changes(before: &Option<BTreeMap<String, Vec<u8>>>, after: &Option<BTreeMap<String, Vec<u8>>>) {
    let (Some(before), Some(after)) = (before, after) else { return };
    let value = |bytes: &[u8]| output::shown(&String::from_utf8_lossy(bytes));
    for (key, new) in after {
        match before.get(key) {
            None => println!("    kv set     {} = {}", output::shown(key), value(new)),
            Some(old) if old != new => {
                println!("    kv changed {} = {} (was {})", output::shown(key), value(new), value(old))
            }
            Some(_) => {}
        }
    }
    for key in before.keys().filter(|key| !after.contains_key(*key)) {
        println!("    kv deleted {}", output::shown(key));
    }
}

/// The period's usage charge so far, as `nexus usage` shows it: (estimate, currency).
async fn usage_estimate(target: &Target, client: &reqwest::Client, install: &str) -> Option<(i64, String)> {
    let usage = target
        .send(client.get(target.url(&format!("/v1/installs/{install}/usage"))), &target.tenant_token)
        .await
        .ok()?;
    usage["meter"].as_str()?;
    Some((usage["estimate_minor"].as_i64()?, usage["currency"].as_str()?.to_string()))
}

fn print_charge(before: &Option<(i64, String)>, after: &Option<(i64, String)>) {
    let Some((now, currency)) = after else { return };
    let added = now - before.as_ref().map_or(0, |(minor, _)| *minor);
    let money = |minor: i64| match nexus_money::Currency::from_code(currency) {
        Ok(currency) => nexus_money::Money::new(minor, currency).to_string(),
        Err(_) => format!("{minor} {currency}"),
    };
    println!(
        "    charge +{} this period, {} so far (charged when the period ends; `nexus usage --profile dev`)",
        money(added),
        money(*now)
    );
}
