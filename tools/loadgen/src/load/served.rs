//! What the server reports it did, read over its API: the deliveries it has applied (the
//! queue's drain) and the invocation rows it recorded.

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Client;
use serde_json::Value;
use url::Url;

use super::client;

/// Waits until the server's worker has applied every accepted event (`GET /v1/deliveries`),
/// printing what is left each second, and prints how long the backlog took to drain.
pub(super) async fn drained(base: &Url, token: &str, accepted: u64) -> anyhow::Result<()> {
    let client = client()?;
    let started = Instant::now();
    let applied_url = base.join("/v1/deliveries?state=applied&per_page=1")?;
    let at_start = applied(&client, &applied_url, token).await?;
    let mut told = Instant::now();
    loop {
        let done = applied(&client, &applied_url, token).await?;
        if done >= accepted {
            let took = started.elapsed().as_secs_f64();
            let rate = (accepted - at_start) as f64 / took.max(f64::MIN_POSITIVE);
            println!(
                "drain            {at_start} of {accepted} deliveries applied when the load stopped; the other {} in {took:.2} s ({rate:.0} deliveries/s)",
                accepted - at_start
            );
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{done} of {accepted} deliveries applied after 600 s"
        );
        if told.elapsed() >= Duration::from_secs(1) {
            eprintln!("draining: {done} of {accepted} deliveries applied");
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn applied(client: &Client, url: &Url, token: &str) -> anyhow::Result<u64> {
    let page: Value = client.get(url.clone()).bearer_auth(token).send().await?.error_for_status()?.json().await?;
    page["total"].as_u64().context("no `total` in the deliveries page")
}

/// The rows in `invocations` for the tenant's install, as the API reports them.
pub(super) async fn recorded_invocations(base: &Url, token: &str) -> anyhow::Result<u64> {
    let client = client()?;
    let installs: Value =
        client.get(base.join("/v1/installs")?).bearer_auth(token).send().await?.error_for_status()?.json().await?;
    let id =
        installs["items"].get(0).and_then(|install| install["id"].as_str()).context("the tenant has no install")?;
    invocation_rows(&client, base, token, id).await
}

/// The rows in `invocations` for one install (uninstalled ones keep theirs), as the API
/// reports them to its tenant.
pub async fn invocation_rows(client: &Client, base: &Url, token: &str, install: &str) -> anyhow::Result<u64> {
    let url = base.join(&format!("/v1/installs/{install}/invocations?per_page=1"))?;
    let page: Value = client.get(url).bearer_auth(token).send().await?.error_for_status()?.json().await?;
    page["total"].as_u64().context("no `total` in the invocations page")
}
