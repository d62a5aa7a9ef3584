//! Default deny and per-install isolation: capabilities not granted are refused and
//! recorded; KV is scoped per install and persists only what succeeded.

use std::sync::Arc;

use nexus_host::{Capability, Denial, DirKv, InvocationError, KvScope, KvStore, PluginErrorKind};
use nexus_sample_plugins::{ECHO, TAX_CALCULATOR};

use crate::common::*;

#[test]
fn a_capability_not_granted_is_refused_and_recorded() {
    block_on(async {
        let run = invoke(ECHO, context(&[]), &event("x", "{}")).await;
        let denied = InvocationError::PluginError {
            kind: PluginErrorKind::Denied,
            message: "capability Capability::Config not granted".into(),
        };
        assert_eq!(run.result, Err(denied));
        let denial = Denial { capability: Capability::Config, detail: "capability config not granted".into() };
        assert_eq!(run.report.denials, vec![denial]);
    })
}

fn tax(kv: Arc<dyn KvStore>, install: &str) -> nexus_host::InvocationContext {
    let mut context = with_config(all_capabilities(), &[("rates", "DE=1900")]);
    context.kv = kv;
    context.install = install.into();
    context
}

fn order(id: &str) -> nexus_host::Event {
    let payload = r#"{"order_id":"o","amount_minor":1000,"currency":"EUR","region":"DE"}"#;
    nexus_host::Event { id: id.into(), event_type: "order.created".into(), payload: payload.into() }
}

fn total(run: &nexus_host::Invocation) -> i64 {
    let data: serde_json::Value = serde_json::from_str(&data(run)).expect("json");
    data["region_tax_total_minor"].as_i64().expect("total")
}

#[test]
fn kv_is_scoped_per_install_and_persists_in_a_folder() {
    block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv: Arc<dyn KvStore> = Arc::new(DirKv::new(dir.path()));
        assert_eq!(total(&invoke(TAX_CALCULATOR, tax(kv.clone(), "i1"), &order("a")).await), 190);
        assert_eq!(total(&invoke(TAX_CALCULATOR, tax(kv.clone(), "i1"), &order("b")).await), 380);
        assert_eq!(total(&invoke(TAX_CALCULATOR, tax(kv.clone(), "i2"), &order("a")).await), 190, "i2 starts empty");

        // A new store over the same folder sees what was committed.
        let reopened = DirKv::new(dir.path());
        let scope = KvScope { tenant: "t1".into(), install: "i1".into() };
        let keys = reopened.list_keys(&scope, "").await.expect("keys");
        assert_eq!(keys, vec!["seen/a", "seen/b", "total/DE/EUR"]);
        assert_eq!(reopened.get(&scope, "total/DE/EUR").await.expect("get"), Some(b"380".to_vec()));
        assert!(dir.path().join("t1").join("i1.json").exists());
    })
}
