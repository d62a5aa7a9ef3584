//! Verified publishers: a publisher proves it holds a domain by serving the token the
//! marketplace gives it at `https://<domain>/.well-known/nexus-verification.txt`. A check
//! that finds the token verifies the domain (listings, search results and the partner's
//! pages show it); a later check that does not find it takes the badge away.
//!
//! The check goes out under the operator's outbound policy, exactly as plugins' HTTP does:
//! names resolve only to public addresses unless the operator allowed a range, no proxy, no
//! redirects, short timeouts and a small body. A domain written as an address literal in a
//! range the operator allowed (a test's loopback server) is fetched over plain http.
//! Nothing is fetched inside a database transaction.

use std::time::Duration;

use nexus_registry::ErrorCode;
use nexus_registry::publishers::random_hex;
use serde::Serialize;
use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::error::MarketError;
use crate::market::Market;

/// Where the token is served, under the domain.
pub const WELL_KNOWN_PATH: &str = "/.well-known/nexus-verification.txt";
/// How much of the file is read.
const MAX_BODY_BYTES: usize = 4096;
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A publisher's domain and where its verification stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DomainState {
    pub publisher: String,
    pub domain: String,
    /// What the file must contain.
    pub token: String,
    /// Where the file is fetched from.
    pub url: String,
    pub verified: bool,
    pub verified_at: Option<i64>,
    pub checked_at: Option<i64>,
    /// Why the last check failed.
    pub last_error: Option<String>,
}

fn invalid(message: impl Into<String>) -> MarketError {
    MarketError::invalid(ErrorCode::InvalidRequest, message)
}

/// Owners and admins (tokens with the `keys` scope) of `publisher`, and operators.
fn may_manage(caller: &Caller, publisher: &str) -> Result<(), MarketError> {
    caller.may_act_for_publisher(publisher)?;
    if let Caller::Publisher(credential) = caller {
        credential.require(nexus_registry::Scope::Keys)?;
    }
    Ok(())
}

/// The URL the token is fetched from, for a domain as the publisher wrote it: a host name
/// over https, or an address literal (with a port) in a range the operator allowed, over
/// http. Refused with what is wrong.
pub fn check_url(market: &Market, domain: &str) -> Result<(String, String), MarketError> {
    let domain = domain.trim().trim_end_matches('.').to_lowercase();
    if domain.is_empty() || domain.len() > 253 {
        return Err(invalid("a domain has 1 to 253 characters, such as example.com"));
    }
    let parsed = reqwest::Url::parse(&format!("https://{domain}/"))
        .map_err(|_| invalid(format!("`{domain}` is not a domain name, such as example.com")))?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let written = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_string(),
    };
    if parsed.path() != "/" || written != domain || !parsed.username().is_empty() {
        return Err(invalid(format!("`{domain}` is not a domain name: give the name alone, such as example.com")));
    }
    let policy = &market.runner.host().config().outbound;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        if !policy.permits(ip) || !nexus_host::capability::http::network::is_internal(ip) {
            return Err(invalid(format!("`{domain}` is an address, not a domain name such as example.com")));
        }
        return Ok((domain.clone(), format!("http://{domain}{WELL_KNOWN_PATH}")));
    }
    let labels_ok = host.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if !labels_ok || !host.contains('.') || parsed.port().is_some() {
        return Err(invalid(format!("`{domain}` is not a domain name, such as example.com")));
    }
    if nexus_host::capability::http::network::names_internal_host(&host) {
        return Err(invalid(format!("`{domain}` names a local network, not a public domain")));
    }
    Ok((domain.clone(), format!("https://{domain}{WELL_KNOWN_PATH}")))
}

/// Claims `domain` for `publisher`: a new token to serve; any earlier domain (and its
/// badge) is replaced.
pub async fn claim(
    market: &Market,
    caller: &Caller,
    publisher: &str,
    domain: &str,
) -> Result<DomainState, MarketError> {
    may_manage(caller, publisher)?;
    let (domain, _) = check_url(market, domain)?;
    let exists: Option<String> = sqlx::query_scalar("SELECT name FROM publishers WHERE name = $1")
        .bind(publisher)
        .fetch_optional(&market.db.pool)
        .await?;
    exists.ok_or_else(|| MarketError::NotFound(format!("publisher {publisher}")))?;
    let token = format!("nexus-verification={}", random_hex(16)?);
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    sqlx::query(
        "INSERT INTO publisher_domains (publisher, domain, token, claimed_by, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (publisher) DO UPDATE SET domain = excluded.domain, token = excluded.token, \
         claimed_by = excluded.claimed_by, created_at = excluded.created_at, checked_at = NULL, verified_at = NULL, \
         last_error = NULL",
    )
    .bind(publisher)
    .bind(&domain)
    .bind(&token)
    .bind(caller.actor())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit::record(&mut *tx, &caller.actor(), "publisher.domain_claimed", publisher, json!({ "domain": domain }))
        .await?;
    tx.commit().await?;
    state(market, caller, publisher).await
}

/// The publisher's domain, for those who manage it (with the token to serve).
pub async fn state(market: &Market, caller: &Caller, publisher: &str) -> Result<DomainState, MarketError> {
    may_manage(caller, publisher)?;
    let row = sqlx::query_as::<_, DomainRow>(
        "SELECT domain, token, checked_at, verified_at, last_error FROM publisher_domains WHERE publisher = $1",
    )
    .bind(publisher)
    .fetch_optional(&market.db.pool)
    .await?
    .ok_or_else(|| MarketError::NotFound(format!("a domain claimed by {publisher}")))?;
    let url = check_url(market, &row.domain).map(|(_, url)| url).unwrap_or_default();
    Ok(DomainState {
        publisher: publisher.to_string(),
        domain: row.domain,
        token: row.token,
        url,
        verified: row.verified_at.is_some(),
        verified_at: row.verified_at,
        checked_at: row.checked_at,
        last_error: row.last_error,
    })
}

#[derive(sqlx::FromRow)]
struct DomainRow {
    domain: String,
    token: String,
    checked_at: Option<i64>,
    verified_at: Option<i64>,
    last_error: Option<String>,
}

/// Fetches the file and records what it found: verified when it holds the token, not (the
/// badge gone, with the reason) otherwise.
pub async fn check(market: &Market, caller: &Caller, publisher: &str) -> Result<DomainState, MarketError> {
    let claimed = state(market, caller, publisher).await?;
    let found = fetch(market, &claimed).await;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    // Only the claim that was checked (a new claim meanwhile keeps its own state). The first
    // statement makes the change of state, at most once among checks at once (the row's
    // lock orders them); it is audited. The second only records the check.
    let (change, action, detail) = match &found {
        Ok(()) => (
            "verified_at = $1, last_error = $4 WHERE publisher = $2 AND token = $3 AND verified_at IS NULL",
            "publisher.domain_verified",
            json!({ "domain": claimed.domain }),
        ),
        Err(reason) => (
            "verified_at = NULL, last_error = $4 WHERE publisher = $2 AND token = $3 \
             AND (verified_at IS NOT NULL OR checked_at IS NULL)",
            "publisher.domain_unverified",
            json!({ "domain": claimed.domain, "reason": reason }),
        ),
    };
    let error = found.as_ref().err().map(String::as_str);
    let changed = sqlx::query(&format!("UPDATE publisher_domains SET checked_at = $1, {change}"))
        .bind(now)
        .bind(publisher)
        .bind(&claimed.token)
        .bind(error)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if changed {
        audit::record(&mut *tx, &caller.actor(), action, publisher, detail).await?;
    } else {
        sqlx::query(
            "UPDATE publisher_domains SET checked_at = $1, last_error = $2 WHERE publisher = $3 AND token = $4",
        )
        .bind(now)
        .bind(error)
        .bind(publisher)
        .bind(&claimed.token)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    state(market, caller, publisher).await
}

/// Fetches the well-known file under the operator's outbound policy; why it does not verify.
async fn fetch(market: &Market, claimed: &DomainState) -> Result<(), String> {
    let (_, url) = check_url(market, &claimed.domain).map_err(|e| e.to_string())?;
    let policy = &market.runner.host().config().outbound;
    let client = nexus_host::capability::http::guarded_client(policy, "nexus-domain-check");
    let response = client
        .get(&url)
        .timeout(CHECK_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url} could not be fetched: {}", cause(&e)))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url} could not be read: {}", cause(&e)))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY_BYTES {
            return Err(format!("{url} is over {MAX_BODY_BYTES} bytes; serve the token alone"));
        }
    }
    let text = String::from_utf8_lossy(&body);
    if text.lines().any(|line| line.trim() == claimed.token) {
        Ok(())
    } else {
        Err(format!("{url} does not hold the token {}", claimed.token))
    }
}

/// The innermost cause of a request error (reqwest's own message says only "error sending
/// request").
fn cause(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message = inner.to_string();
        source = inner.source();
    }
    message
}
