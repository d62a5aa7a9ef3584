//! Publishing: the round trip, every rejection by its code, immutability, and verification
//! of bytes on read.

use nexus_host::{Capability, Event, Grants, Host, HostConfig, InvocationContext, Limits, MemoryKv, Secrets};
use nexus_registry::{PluginId, PublishRequest, SecretKey, SignedBy, signature::signing_message};

use crate::common::*;

fn echo_id() -> PluginId {
    "nexus-labs/echo".parse().unwrap()
}

#[test]
fn publish_fetch_verify_and_run_round_trip() {
    on_both(|f| async move {
        let key = SecretKey::generate().unwrap();
        let info = f.registry.add_key(&f.caller, &key.public_key()).await.unwrap();
        let mut request = request("echo", "1.0.0");
        let digest = nexus_host::Digest::of(&request.component);
        let message = signing_message(&echo_id(), &"1.0.0".parse().unwrap(), &digest);
        request.signature = Some(SignedBy { key_fingerprint: info.fingerprint.clone(), signature: key.sign(&message) });
        request.claimed_digest = Some(digest.to_string());

        let published = f.registry.publish(&f.caller, request).await.unwrap();
        assert_eq!((published.id.as_str(), published.version.as_str()), ("nexus-labs/echo", "1.0.0"));
        assert_eq!(published.digest, digest);
        assert_eq!(published.signed_by.as_deref(), Some(info.fingerprint.as_str()));
        assert!(published.warnings.is_empty(), "{:?}", published.warnings);

        let (record, bytes) = f.registry.fetch(&echo_id(), &"1.0.0".parse().unwrap()).await.unwrap();
        assert_eq!(nexus_host::Digest::of(&bytes), digest);
        assert_eq!(record.manifest.summary, "Returns each event's payload, for testing an integration end to end");
        assert_eq!(f.registry.verify_signature(&echo_id(), &record).await.unwrap(), Some(info.fingerprint.clone()));

        let host = Host::new(HostConfig { max_concurrent: 2, ..HostConfig::default() }).unwrap();
        let plugin = host.load(&bytes).await.unwrap().0;
        let context = InvocationContext {
            tenant: "t".into(),
            install: "i".into(),
            grants: Grants { capabilities: [Capability::Config].into_iter().collect(), allowed_hosts: vec![] },
            config: [("prefix".to_string(), "registry:".to_string())].into_iter().collect(),
            secrets: Secrets::default(),
            kv: std::sync::Arc::new(MemoryKv::new()),
            limits: Limits::default(),
        };
        let event = Event { id: "e".into(), event_type: "x".into(), payload: "{}".into() };
        let run = host.invoke(&plugin, context, &event).await;
        assert_eq!(run.result.unwrap().data.as_deref(), Some("registry:{}"));

        // Revoking the key means the version no longer verifies.
        f.registry.revoke_key(&f.caller, &info.fingerprint).await.unwrap();
        assert_eq!(code(f.registry.verify_signature(&echo_id(), &record).await), "unknown_key");
    });
}

#[test]
fn every_rejection_has_its_own_code_and_stores_nothing() {
    on_both(|f| async move {
        let reject = |request: PublishRequest| {
            let registry = &f.registry;
            let caller = f.caller.clone();
            async move { code(registry.publish(&caller, request).await) }
        };
        let mut not_wasm = request("echo", "1.0.0");
        not_wasm.component = b"\0asm but not really".to_vec();
        assert_eq!(reject(not_wasm).await, "not_a_component");

        let mut core_module = request("echo", "1.0.0");
        core_module.component = vec![0, b'a', b's', b'm', 1, 0, 0, 0];
        assert_eq!(reject(core_module).await, "not_a_component");

        let mut newer_contract = request("echo", "1.0.0");
        newer_contract.component = nexus_sample_plugins::bytes(nexus_sample_plugins::CONTRACT_V1_1).unwrap();
        assert_eq!(reject(newer_contract).await, "unsupported_contract");

        let mut undeclared = request("echo", "1.0.0");
        undeclared.component = component("chat-notifier");
        let error = f.registry.publish(&f.caller, undeclared).await.unwrap_err();
        assert_eq!(error.code().as_str(), "undeclared_capability");
        assert_eq!(
            error.to_string(),
            "the component imports nexus:plugin/log but the manifest does not declare capability log"
        );

        let mut too_large = request("echo", "1.0.0");
        too_large.component = vec![0; 33 << 20];
        assert_eq!(reject(too_large).await, "too_large");

        let bad_semver = PublishRequest { manifest: manifest("echo", "1.0"), ..request("echo", "1.0.0") };
        let error = f.registry.publish(&f.caller, bad_semver).await.unwrap_err();
        assert_eq!(
            (error.code().as_str(), error.to_string().starts_with("manifest field version is invalid")),
            ("manifest_invalid_field", true)
        );

        let mut other_namespace = request("echo", "1.0.0");
        other_namespace.manifest = other_namespace.manifest.replace("nexus-labs/echo", "globex/echo");
        let error = f.registry.publish(&f.caller, other_namespace).await.unwrap_err();
        assert_eq!(error.code().as_str(), "namespace_not_owned");
        assert_eq!(error.to_string(), "the namespace `globex` belongs to another publisher");

        let mut wrong_digest = request("echo", "1.0.0");
        wrong_digest.claimed_digest = Some(nexus_host::Digest::of(b"other").to_string());
        assert_eq!(reject(wrong_digest).await, "digest_mismatch");

        let mut missing_summary = request("echo", "1.0.0");
        missing_summary.manifest =
            missing_summary.manifest.lines().filter(|l| !l.starts_with("summary")).collect::<Vec<_>>().join("\n");
        assert_eq!(reject(missing_summary).await, "manifest_missing_field");

        let key = SecretKey::generate().unwrap();
        let info = f.registry.add_key(&f.caller, &key.public_key()).await.unwrap();
        let mut forged = request("echo", "1.0.0");
        let message =
            signing_message(&echo_id(), &"9.9.9".parse().unwrap(), &nexus_host::Digest::of(&forged.component));
        forged.signature = Some(SignedBy { key_fingerprint: info.fingerprint.clone(), signature: key.sign(&message) });
        assert_eq!(reject(forged).await, "signature_mismatch");

        let mut unknown_key = request("echo", "1.0.0");
        let stranger = SecretKey::generate().unwrap();
        let message =
            signing_message(&echo_id(), &"1.0.0".parse().unwrap(), &nexus_host::Digest::of(&unknown_key.component));
        unknown_key.signature =
            Some(SignedBy { key_fingerprint: stranger.public_key().fingerprint(), signature: stranger.sign(&message) });
        assert_eq!(reject(unknown_key).await, "unknown_key");

        // Nothing above was stored.
        assert_eq!(code(f.registry.versions(&echo_id()).await), "not_found");
        if f.backend == Backend::Sqlite {
            assert!(!f.artifacts_dir.exists(), "no artifact written");
        }
    });
}

#[test]
fn versions_are_immutable_even_after_a_yank() {
    on_both(|f| async move {
        f.registry.publish(&f.caller, request("echo", "1.0.0")).await.unwrap();
        let again = f.registry.publish(&f.caller, request("echo", "1.0.0")).await.unwrap_err();
        assert_eq!(again.code().as_str(), "version_exists");
        assert_eq!(
            again.to_string(),
            "nexus-labs/echo@1.0.0 is already published; versions are immutable, publish a new version"
        );
        // Build metadata does not make another version.
        assert_eq!(code(f.registry.publish(&f.caller, request("echo", "1.0.0+rebuild")).await), "version_exists");
        f.registry.yank(&f.caller, &echo_id(), &"1.0.0".parse().unwrap(), "broken", None).await.unwrap();
        assert_eq!(code(f.registry.publish(&f.caller, request("echo", "1.0.0")).await), "version_exists");
    });
}

#[test]
fn concurrent_publishes_of_one_version_have_exactly_one_winner() {
    on_both(|f| async move {
        let registry = std::sync::Arc::new(f.registry);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (registry, caller) = (registry.clone(), f.caller.clone());
            tasks.spawn(async move { registry.publish(&caller, request("echo", "2.0.0")).await.map(|p| p.version) });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            outcomes.push(joined.unwrap().map_err(|e| e.code().as_str()));
        }
        outcomes.sort();
        assert_eq!(
            outcomes,
            vec![Ok("2.0.0".to_string()), Err("version_exists"), Err("version_exists"), Err("version_exists")]
        );
        assert_eq!(registry.versions(&echo_id()).await.unwrap().len(), 1);
    });
}

#[test]
fn bytes_that_do_not_match_their_digest_are_never_served() {
    on_both(|f| async move {
        let published = f.registry.publish(&f.caller, request("echo", "1.0.0")).await.unwrap();
        let hex = published.digest.hex();
        match f.backend {
            Backend::Sqlite => {
                let file = f.artifacts_dir.join("sha256").join(&hex[..2]).join(&hex);
                let mut bytes = std::fs::read(&file).unwrap();
                bytes[100] ^= 0xFF;
                std::fs::write(&file, bytes).unwrap();
            }
            Backend::Postgres => {
                let pool = &f.registry.db().pool;
                sqlx::query("UPDATE artifacts SET bytes = $1 WHERE digest = $2")
                    .bind(b"tampered".to_vec())
                    .bind(published.digest.to_string())
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
        let error = f.registry.fetch(&echo_id(), &"1.0.0".parse().unwrap()).await.unwrap_err();
        assert_eq!(error.code().as_str(), "artifact_corrupt");
    });
}

#[test]
fn declared_but_unused_capabilities_are_warnings() {
    on_both(|f| async move {
        let mut request = request("echo", "1.0.0");
        request.manifest =
            request.manifest.replacen("[[pricing]]", "[capabilities.kv]\nreason = \"Maybe later\"\n\n[[pricing]]", 1);
        let published = f.registry.publish(&f.caller, request).await.unwrap();
        assert_eq!(published.warnings, vec!["capability kv is declared but the component never uses it".to_string()]);
    });
}

#[test]
fn hosts_a_hosted_marketplace_will_not_reach_are_warnings() {
    on_both(|f| async move {
        let mut request = request("echo", "1.0.0");
        let http = "[capabilities.http]\nreason = \"Calls home\"\nhosts = [\n  { host = \"127.0.0.1:9000\", reason = \"a local test server\" },\n  { host = \"metadata.google.internal\", reason = \"instance metadata\" },\n  { host = \"hooks.example.com\", reason = \"webhooks\" },\n]\n\n[[pricing]]";
        request.manifest = request.manifest.replacen("[[pricing]]", http, 1);
        let published = f.registry.publish(&f.caller, request).await.unwrap();
        let refused = |host: &str| {
            format!(
                "host {host} is a loopback, private or metadata address; `nexus serve` refuses to connect to it \
                 unless the operator allows the range (--allow-private-network)"
            )
        };
        assert_eq!(
            published.warnings,
            vec![
                "capability http is declared but the component never uses it".to_string(),
                refused("127.0.0.1:9000"),
                refused("metadata.google.internal"),
            ]
        );
    });
}
