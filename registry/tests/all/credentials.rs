//! Tokens: scopes, revocation, expiry, namespaces, and the publish rate limit.

use nexus_registry::Scope;

use crate::common::*;

#[test]
fn tokens_are_scoped_revocable_and_expire() {
    on_both(|f| async move {
        assert_eq!(code(f.registry.authenticate("nexus_bogus").await), "unauthenticated");

        let yank_only =
            f.registry.issue_token(&f.caller, [Scope::Yank].into_iter().collect(), "ci", None, "test").await.unwrap();
        assert!(yank_only.secret.starts_with("nexus_"));
        let caller = f.registry.authenticate(&yank_only.secret).await.unwrap();
        let error = f.registry.publish(&caller, request("echo", "1.0.0")).await.unwrap_err();
        assert_eq!(
            (error.code().as_str(), error.to_string()),
            ("missing_scope", "the API token lacks the `publish` scope".into())
        );
        assert_eq!(
            code(f.registry.issue_token(&caller, [Scope::Publish].into_iter().collect(), "x", None, "test").await),
            "missing_scope"
        );

        f.registry.revoke_token(&f.caller, &yank_only.id).await.unwrap();
        assert_eq!(code(f.registry.authenticate(&yank_only.secret).await), "token_revoked");

        let expired = f
            .registry
            .issue_token(&f.caller, [Scope::Publish].into_iter().collect(), "old", Some(1), "test")
            .await
            .unwrap();
        assert_eq!(code(f.registry.authenticate(&expired.secret).await), "token_expired");
    });
}

#[test]
fn a_publisher_cannot_touch_another_namespace() {
    on_both(|f| async move {
        f.registry.publish(&f.caller, request("echo", "1.0.0")).await.unwrap();
        let other = f.registry.create_publisher(&"globex".parse().unwrap(), "Globex", "test").await.unwrap();
        let globex = f.registry.authenticate(&other.secret).await.unwrap();
        assert_eq!(code(f.registry.publish(&globex, request("echo", "1.0.1")).await), "namespace_not_owned");
        let id = "nexus-labs/echo".parse().unwrap();
        let version = "1.0.0".parse().unwrap();
        assert_eq!(code(f.registry.yank(&globex, &id, &version, "mine now", None).await), "namespace_not_owned");
        assert_eq!(
            code(f.registry.create_publisher(&"globex".parse().unwrap(), "Again", "test").await),
            "publisher_exists"
        );
    });
}

#[test]
fn publishing_too_fast_is_rate_limited_with_a_retry_time() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(Backend::Sqlite, &dir, 2).await;
        f.registry.publish(&f.caller, request("echo", "1.0.0")).await.unwrap();
        f.registry.publish(&f.caller, request("echo", "1.0.1")).await.unwrap();
        let error = f.registry.publish(&f.caller, request("echo", "1.0.2")).await.unwrap_err();
        match error {
            nexus_registry::RegistryError::RateLimited { retry_after } => {
                assert!((1..=30).contains(&retry_after.as_secs()), "{retry_after:?}");
            }
            other => panic!("expected rate_limited, got {other:?}"),
        }
        // Another publisher has its own budget.
        let other = f.registry.create_publisher(&"globex".parse().unwrap(), "Globex", "test").await.unwrap();
        let globex = f.registry.authenticate(&other.secret).await.unwrap();
        let mut theirs = request("echo", "1.0.0");
        theirs.manifest = theirs.manifest.replace("nexus-labs/", "globex/");
        f.registry.publish(&globex, theirs).await.unwrap();
    });
}
