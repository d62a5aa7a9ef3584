//! Many tenants' installs of the same plugin, concurrently, sharing one host and one KV
//! store: each sees only its own data and its own grants.

use std::sync::Arc;

use nexus_host::{
    Capability, Event, Grants, Host, HostConfig, InvocationContext, InvocationError, KvScope, KvStore, Limits,
    MemoryKv, PluginErrorKind, Secrets,
};

fn context(kv: &Arc<MemoryKv>, tenant: usize, grants: Grants) -> InvocationContext {
    InvocationContext {
        tenant: format!("tenant-{tenant}"),
        install: "tax".into(),
        grants,
        config: [("rates".to_string(), format!("DE={}", 100 * (tenant + 1)))].into_iter().collect(),
        secrets: Secrets::default(),
        kv: kv.clone(),
        limits: Limits::default(),
    }
}

fn order(id: String) -> Event {
    let payload = r#"{"order_id":"o","amount_minor":10000,"currency":"EUR","region":"DE"}"#;
    Event { id, event_type: "order.created".into(), payload: payload.into() }
}

#[test]
fn tenants_share_a_host_but_not_their_data_or_grants() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let host = Arc::new(Host::new(HostConfig::default()).unwrap());
        let bytes = nexus_sample_plugins::bytes(nexus_sample_plugins::TAX_CALCULATOR).unwrap();
        let plugin = host.load(&bytes).await.unwrap().0;
        let kv = Arc::new(MemoryKv::new());

        // Ten tenants, three orders each, all in flight together. Tenant n's rate is
        // (n + 1) percent, so each total shows whose config and KV it used.
        let mut tasks = tokio::task::JoinSet::new();
        for tenant in 0..10 {
            for order_number in 0..3 {
                let (host, plugin) = (host.clone(), plugin.clone());
                let context = context(&kv, tenant, Grants::all(vec![]));
                tasks.spawn(async move {
                    let run = host.invoke(&plugin, context, &order(format!("order-{order_number}"))).await;
                    (tenant, run.result.map(|o| o.data))
                });
            }
        }
        while let Some(joined) = tasks.join_next().await {
            let (tenant, result) = joined.unwrap();
            assert!(result.is_ok(), "tenant {tenant}: {result:?}");
        }
        for tenant in 0..10 {
            let scope = KvScope { tenant: format!("tenant-{tenant}"), install: "tax".into() };
            let total = kv.get(&scope, "total/DE/EUR").await.unwrap().unwrap();
            let expected = 3 * 100 * (tenant as i64 + 1);
            assert_eq!(String::from_utf8(total).unwrap(), expected.to_string(), "tenant {tenant}");
            assert_eq!(kv.list_keys(&scope, "seen/").await.unwrap().len(), 3);
        }

        // A tenant that did not grant kv is refused, whatever other tenants granted.
        let without_kv = Grants {
            capabilities: [Capability::Config, Capability::Usage, Capability::Log].into_iter().collect(),
            allowed_hosts: vec![],
        };
        let run = host.invoke(&plugin, context(&kv, 42, without_kv), &order("x".into())).await;
        let denied = InvocationError::PluginError {
            kind: PluginErrorKind::Denied,
            message: "capability Capability::Kv not granted".into(),
        };
        assert_eq!(run.result, Err(denied));
        assert_eq!(host.metrics().invocations["ok"], 30);
    });
}
