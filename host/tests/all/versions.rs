//! Contract versions side by side, and what is refused at load.

use nexus_host::{Capability, ContractVersion, Info, LoadError};
use nexus_sample_plugins::{CONTRACT_V1_1, ECHO};

use crate::common::*;

#[test]
fn v1_0_and_v1_1_plugins_run_in_one_host() {
    block_on(async {
        let old = load(ECHO).await;
        let new = load(CONTRACT_V1_1).await;
        assert_eq!(old.contract(), ContractVersion::V1_0);
        assert_eq!(new.contract(), ContractVersion::V1_1);
        assert!(ContractVersion::V1_0.is_published() && !ContractVersion::V1_1.is_published());

        let (one, two) = (event("x", "1"), event("x", "2"));
        let (a, b) = tokio::join!(
            host().invoke(&old, with_config(context(&[Capability::Config]), &[("prefix", ">")]), &one),
            host().invoke(&new, context(&[Capability::Log]), &two),
        );
        assert_eq!(data(&a), ">1");
        assert_eq!(data(&b), r#"{"contract":"1.1.0","debug_enabled":true}"#);
        assert_eq!(b.report.logs[0].message, "handling evt-1");

        // `log.enabled`, the function 1.1 added, answers false without the grant.
        let quiet = host().invoke(&new, context(&[]), &event("x", "3")).await;
        assert_eq!(data(&quiet), r#"{"contract":"1.1.0","debug_enabled":false}"#);
        assert!(quiet.report.logs.is_empty());
    })
}

#[test]
fn plugins_describe_themselves() {
    block_on(async {
        let old = load(ECHO).await;
        let info = host().describe(&old, all_capabilities()).await.expect("describe");
        assert_eq!(info, Info { name: "echo".into(), version: "0.1.0".into(), event_types: vec!["*".into()] });
        assert!(info.handles("anything"));
        let new = load(CONTRACT_V1_1).await;
        assert_eq!(host().describe(&new, all_capabilities()).await.expect("describe").version, "1.1.0");
    })
}

fn refusal(bytes: &[u8]) -> LoadError {
    block_on(async { host().load(bytes).await.expect_err("refused") })
}

#[test]
fn what_is_not_a_plugin_is_refused_with_a_reason() {
    let core = wat::parse_str("(module)").expect("wat");
    let error = refusal(&core);
    assert_eq!(error.code(), "not_a_component");
    assert!(error.to_string().contains("core WebAssembly module"), "{error}");

    assert_eq!(refusal(b"definitely not wasm").code(), "not_a_component");
    let mut truncated = nexus_sample_plugins::bytes(ECHO).expect("echo");
    truncated.truncate(truncated.len() / 2);
    assert_eq!(refusal(&truncated).code(), "not_a_component");

    let empty = wat::parse_str("(component)").expect("wat");
    let error = refusal(&empty);
    assert_eq!(error.code(), "unsupported_contract");
    assert_eq!(
        error.to_string(),
        "the component targets no supported contract version: it exports no nexus:plugin/handler interface"
    );

    let future = wat::parse_str(r#"(component (instance $h) (export "nexus:plugin/handler@2.0.0" (instance $h)))"#)
        .expect("wat");
    let error = refusal(&future);
    assert_eq!(error.code(), "unsupported_contract");
    assert!(error.to_string().contains("it targets nexus:plugin@2.0.0"), "{error}");

    let sneaky = wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#).expect("wat");
    let error = refusal(&sneaky);
    assert_eq!(error.code(), "unsupported_import");
    assert_eq!(
        error.to_string(),
        "the component imports `wasi:http/outgoing-handler@0.2.0`, which the host does not provide"
    );
}

#[test]
fn inspection_reads_contract_and_capabilities_without_compiling() {
    use nexus_host::contract::inspect;

    let echo = inspect(&nexus_sample_plugins::bytes(ECHO).expect("echo")).expect("inspect");
    assert_eq!(echo.contract, ContractVersion::V1_0);
    assert_eq!(echo.capabilities, [Capability::Config].into_iter().collect());
    let notifier =
        inspect(&nexus_sample_plugins::bytes(nexus_sample_plugins::CHAT_NOTIFIER).expect("notifier")).expect("inspect");
    let wanted = [Capability::Log, Capability::Config, Capability::Http, Capability::Usage];
    assert_eq!(notifier.capabilities, wanted.into_iter().collect());
    assert!(notifier.imports.iter().any(|i| i == "nexus:plugin/http@1.0.0"), "{:?}", notifier.imports);
    let newer = inspect(&nexus_sample_plugins::bytes(CONTRACT_V1_1).expect("v1.1")).expect("inspect");
    assert_eq!(newer.contract, ContractVersion::V1_1);

    let core = wat::parse_str("(module)").expect("wat");
    assert_eq!(inspect(&core).map(|_| ()).map_err(|e| e.code()), Err("not_a_component"));
    let sneaky = wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#).expect("wat");
    assert_eq!(inspect(&sneaky).map(|_| ()).map_err(|e| e.code()), Err("unsupported_import"));
}
