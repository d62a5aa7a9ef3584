//! Talking to a Nexus server from the CLI: where it is, which token to send, and turning the
//! API's error shape into a message that says what to do next.

use clap::Args;
use serde::de::DeserializeOwned;

/// The server connection flags shared by every command that talks to a Nexus server:
/// publishers' (`publish`, `yank`, `keys`), tenants' (`install`, `installs`, `events`) and
/// operators' (`tenant create`). Without `--token`, the token (and server) saved by
/// `nexus login` under the profile are used.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The Nexus server [default: the profile's, else http://127.0.0.1:8080].
    #[arg(long, env = "NEXUS_REGISTRY")]
    pub registry: Option<String>,
    /// Your API token: a publisher's, a tenant's or an operator's, as the command needs.
    #[arg(long, env = "NEXUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The saved sign-in to use (`nexus login --profile NAME`).
    #[arg(long, env = "NEXUS_PROFILE", default_value = super::profiles::DEFAULT)]
    pub profile: String,
    #[arg(skip)]
    saved: std::sync::OnceLock<Option<Box<super::profiles::Profile>>>,
}

impl Connection {
    /// The profile `nexus login` saved, if any (read once).
    fn saved(&self) -> Option<&super::profiles::Profile> {
        self.saved.get_or_init(|| super::profiles::load(&self.profile).ok().flatten().map(Box::new)).as_deref()
    }

    /// The server: `--registry`, else the profile's, else the local default.
    pub fn server(&self) -> String {
        self.registry
            .clone()
            .or_else(|| self.saved().map(|saved| saved.registry.clone()))
            .unwrap_or_else(|| super::profiles::LOCAL.to_string())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server().trim_end_matches('/'))
    }

    pub fn token(&self) -> anyhow::Result<&str> {
        if let Some(token) = self.token.as_deref() {
            return Ok(token.trim());
        }
        let saved = self.saved().ok_or_else(|| {
            anyhow::anyhow!(
                "no API token: run `nexus login` (profile `{}`), or pass --token or set NEXUS_TOKEN",
                self.profile
            )
        })?;
        // A profile's token goes only to the server it was issued by.
        if let Some(other) = self.registry.as_deref()
            && other.trim_end_matches('/') != saved.registry
        {
            anyhow::bail!(
                "profile `{}` signed in to {}, not {other}: run `nexus login --registry {other}` (with another \
                 --profile), or pass --token",
                self.profile,
                saved.registry
            );
        }
        Ok(saved.token.as_str())
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// Sends `request` with the token and decodes a JSON answer, or fails with the API's
    /// error code and message.
    pub async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let response =
            request.bearer_auth(self.token()?).send().await.map_err(|e| unreachable_server(&self.server(), &e))?;
        decode(response).await
    }
}

/// The error for a request that got no answer, with the cause chain (reqwest's own message
/// alone says only "error sending request").
pub fn unreachable_server(registry: &str, error: &reqwest::Error) -> anyhow::Error {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    anyhow::anyhow!("cannot reach {registry}: {message} (is `nexus serve` running there?)")
}

pub async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.text().await?;
    if status.is_success() {
        return serde_json::from_str(&body).map_err(|e| anyhow::anyhow!("unexpected answer from the server: {e}"));
    }
    let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let code = error["error"]["code"].as_str().unwrap_or("http_error");
    let message = error["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| format!("HTTP {status}"));
    let hint = match (code, retry_after) {
        ("rate_limited" | "concurrency_limited", Some(seconds)) => format!(" — try again in {seconds} s"),
        ("unauthenticated" | "token_revoked" | "token_expired", _) => {
            " — run `nexus login` again, or check --token / NEXUS_TOKEN".into()
        }
        ("second_factor_required", _) => " — pass --code with your authenticator's code".into(),
        ("version_exists", _) => " — bump `version` in nexus.toml".into(),
        ("consent_required", _) => " — run `nexus install` again to review what it asks for now".into(),
        ("already_installed", _) => " — `nexus installs` shows it".into(),
        ("install_paused", _) => " — `nexus installs` shows why it was paused".into(),
        ("review_not_allowed", _) => " — an organization reviews a plugin after a day of using it".into(),
        ("plugin_delisted", _) => " — an operator removed it from the catalog; it cannot be installed now".into(),
        ("invalid_media" | "media_too_large" | "unsupported_image", _) => {
            " — docs/builders.md (Listing images) lists what an icon and a screenshot may be".into()
        }
        _ => String::new(),
    };
    anyhow::bail!("{message} [{code}]{hint}")
}
