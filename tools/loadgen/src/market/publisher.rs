//! The publisher's client: a new version of echo or pii-redactor as the load starts and every
//! few seconds after, alternating, each keyed and retried like the tenants' requests. Every new
//! version is within the installs' requirement (`^0.1`) and asks for nothing more, so the
//! marketplace moves every live install to it as part of the publish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use anyhow::Context;

use super::send::{Halt, Sender};
use super::setup::{SAMPLES, Setup, publish_request};
use super::tally::{Kind, Tally};

/// Publishes at once and then every `every`, until the budget is spent or `stop` changes.
pub async fn run(
    mut sender: Sender,
    setup: Arc<Setup>,
    token: Arc<str>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Tally> {
    // Patch releases after the seed's 0.1.0 of each.
    let mut patch: BTreeMap<&str, u32> = BTreeMap::new();
    for n in 0_usize.. {
        if n > 0 {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
        }
        let sample = SAMPLES[n % SAMPLES.len()];
        let next = patch.entry(sample).or_default();
        *next += 1;
        let version = format!("0.1.{next}");
        let component = setup.components.get(sample).with_context(|| format!("no {sample} component"))?;
        let request =
            publish_request(&token, sample, &version, component, Some(format!("publish-{sample}-{version}")))?;
        let answer = match sender.keyed(Kind::Publish, &request).await {
            Ok(answer) => answer,
            Err(Halt::Spent) => break,
            // In the tally; the next version is published all the same.
            Err(Halt::Failed) => continue,
        };
        let published = answer.json()["version"] == version.as_str();
        let _ = sender.check(Kind::Publish, &request, &answer, published, "another version than published");
    }
    Ok(sender.tally)
}
