//! The marketplace's domain errors. Each has a stable code from the one list,
//! `nexus_registry::ErrorCode`; the server maps them to HTTP statuses in one place
//! (`server/error.rs`).

use std::time::Duration;

use nexus_registry::{ErrorCode, RegistryError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// Credentials, versions, artifacts: whatever the registry refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The request is malformed or names something invalid; `code` says what.
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },
    /// The request clashes with the current state (already installed, not paused, ...).
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// Installing or upgrading needs the tenant's consent to these capabilities.
    #[error("{message}")]
    ConsentRequired { message: String, requested: Box<crate::consent::Consent> },
    #[error("too many requests for this tenant; retry in {}s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    /// Too many failed sign-ins or codes for an account or from a client.
    #[error("too many failed sign-in attempts; retry in {} minutes", retry_after.as_secs().div_ceil(60).max(1))]
    SignInLimited { retry_after: Duration },
    #[error("this tenant already has {0} invocations in flight; retry shortly")]
    Busy(usize),
    /// The plugin host could not run the invocation now: every slot this tenant may use
    /// stayed busy, or the component is still being compiled on this node. Nothing ran for
    /// the installs named; the node's condition, not the plugins': retry after `retry_after`.
    #[error("{}; retry in {}s", reason.message(), retry_after.as_secs().max(1))]
    HostBusy { retry_after: Duration, reason: BusyReason, details: Option<serde_json::Value> },
    #[error("storage: {0}")]
    Storage(String),
}

impl MarketError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Registry(error) => error.code(),
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Invalid { code, .. } | Self::Conflict { code, .. } => *code,
            Self::ConsentRequired { .. } => ErrorCode::ConsentRequired,
            Self::RateLimited { .. } | Self::SignInLimited { .. } => ErrorCode::RateLimited,
            Self::Busy(_) => ErrorCode::ConcurrencyLimited,
            Self::HostBusy { .. } => ErrorCode::HostBusy,
            Self::Storage(_) => ErrorCode::StorageFailure,
        }
    }

    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into() }
    }

    /// Free text a caller chose, within its bound (`nexus_registry::text`); `code` is
    /// `invalid_request` for bodies, `invalid_query` for query strings.
    pub fn check_text(code: ErrorCode, field: &str, value: &str, max: usize) -> Result<(), Self> {
        nexus_registry::text::check(field, value, max, false).map_err(|message| Self::invalid(code, message))
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }
}

/// Wraps a database error; details stay in the operator's log.
pub fn storage(error: impl std::fmt::Display) -> MarketError {
    MarketError::Storage(error.to_string())
}

/// A currency as a row holds it: a code that is no currency is a broken row.
pub fn stored_currency(code: &str) -> Result<nexus_money::Currency, MarketError> {
    nexus_money::Currency::from_code(code).map_err(|e| storage(format!("stored currency: {e}")))
}

impl From<sqlx::Error> for MarketError {
    fn from(error: sqlx::Error) -> Self {
        storage(error)
    }
}

/// The most items one page of any list holds.
pub const MAX_PER_PAGE: u32 = 100;

/// `per_page` as every list takes it: 1 to [`MAX_PER_PAGE`], `default` when absent;
/// anything else is refused, never clamped silently.
pub fn per_page(value: Option<u32>, default: u32) -> Result<u32, MarketError> {
    match value.unwrap_or(default) {
        n @ 1..=MAX_PER_PAGE => Ok(n),
        _ => Err(MarketError::invalid(ErrorCode::InvalidQuery, format!("per_page must be 1 to {MAX_PER_PAGE}"))),
    }
}

/// `page` and `per_page` of a list without other filters.
/// Why the plugin host answered busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyReason {
    /// Every invocation slot this tenant may use stayed taken.
    Capacity,
    /// The component is still being compiled on this node (a large Python or JavaScript
    /// component takes tens of seconds, once).
    Compiling,
}

impl BusyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capacity => "capacity",
            Self::Compiling => "compiling",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Capacity => "the plugin host is at capacity",
            Self::Compiling => "the plugin's component is still being compiled on this node",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1-based, default 1.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

impl PageQuery {
    /// The page number and size, checked (`invalid_query` when out of range).
    pub fn checked(&self) -> Result<(u32, u32), MarketError> {
        let page = self.page.unwrap_or(1);
        if page == 0 {
            return Err(MarketError::invalid(ErrorCode::InvalidQuery, "page must be 1 or more"));
        }
        Ok((page, per_page(self.per_page, 50)?))
    }
}

/// A page of a list that grows while it is read (invocations, the audit log), newest first:
/// pass `next_after` as `after` to continue where this page ended, whatever was added
/// meanwhile; no item is repeated or skipped.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CursorPage<T> {
    pub items: Vec<T>,
    /// Whether older items follow.
    pub has_more: bool,
    /// The cursor of the next page (the last item's id); absent on the last page.
    pub next_after: Option<String>,
    /// Items matching the filters, all pages together, when the page was read.
    pub total: u64,
}

impl<T> CursorPage<T> {
    /// From up to `per_page + 1` rows (one more than shown says whether more follow).
    pub fn new(mut items: Vec<T>, per_page: u32, total: i64, id: impl Fn(&T) -> String) -> Self {
        let has_more = items.len() > per_page as usize;
        items.truncate(per_page as usize);
        let next_after = if has_more { items.last().map(id) } else { None };
        Self { items, has_more, next_after, total: u64::try_from(total).unwrap_or(0) }
    }
}

/// A page of results and where the next starts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `page` to get the next page; absent on the last.
    pub next_page: Option<u32>,
    pub total: u64,
}

impl<T> Page<T> {
    /// Page `query` of a whole list held in memory (a plugin's versions, a publisher's keys
    /// or listings: bounded by their owner).
    pub fn of(all: Vec<T>, query: &PageQuery) -> Result<Self, MarketError> {
        let (page, per_page) = query.checked()?;
        let total = all.len() as i64;
        let skip = usize::try_from(u64::from(page - 1) * u64::from(per_page)).unwrap_or(usize::MAX);
        let items = all.into_iter().skip(skip).take(per_page as usize).collect();
        Ok(Self::new(items, page, per_page, total))
    }

    /// Page `page` (1-based) of `per_page` items out of `total`.
    pub fn new(items: Vec<T>, page: u32, per_page: u32, total: i64) -> Self {
        let total = u64::try_from(total).unwrap_or(0);
        let seen = u64::from(page.saturating_sub(1)) * u64::from(per_page) + items.len() as u64;
        // `checked_add`: the last possible page has no next one.
        Self { items, next_page: page.checked_add(1).filter(|_| seen < total), total }
    }
}

/// A refused money operation as the marketplace reports it: a 4xx with a stable code.
pub fn money_error(error: nexus_money::MoneyError) -> MarketError {
    use nexus_money::MoneyError as E;
    let code = match &error {
        E::UnknownCurrency(_) => nexus_registry::ErrorCode::UnknownCurrency,
        E::CurrencyMismatch { .. } => nexus_registry::ErrorCode::CurrencyMismatch,
        E::Overflow => nexus_registry::ErrorCode::AmountOverflow,
        E::InvalidAmount(..) => nexus_registry::ErrorCode::InvalidAmount,
        E::InvalidPolicy(_) => nexus_registry::ErrorCode::InvalidPolicy,
        E::InvalidPosting(_) => nexus_registry::ErrorCode::InvalidPosting,
        E::RefundExceedsCharge { .. } => nexus_registry::ErrorCode::RefundExceedsCharge,
        E::UnknownInterval(_) => nexus_registry::ErrorCode::InvalidPlan,
        E::InvalidPeriod(_) => nexus_registry::ErrorCode::InvalidPeriod,
    };
    MarketError::invalid(code, error.to_string())
}
