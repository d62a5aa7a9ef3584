//! Mail to people: an outbox written in the transaction of what causes a mail (a sign-up's
//! verification link, a password reset, ...), sent by every node's worker beside webhooks:
//! claim due rows, send each outside any transaction, settle the batch in one transaction.
//! Failures are retried on the event deliveries' schedule (`runner/worker.rs`), then the mail
//! is dead.
//!
//! Where mail goes is the operator's choice (`nexus serve --smtp-url`): an SMTP server
//! (`smtp://host:port` plain, `smtp://host:port?tls=required` with STARTTLS, `smtps://` with
//! TLS; credentials in the URL's user and password), or, without one, `.eml` files in
//! `<data-dir>/outbox/`, one per mail, named by its id. Neither the URL nor a mail's body is
//! ever logged: bodies carry sign-in links.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use nexus_registry::db::process_id;
use sqlx::FromRow;

use crate::error::MarketError;
use crate::ids::MailId;
use crate::market::Market;
use crate::outbox::{MAX_ATTEMPTS, jittered, wait_before};

/// Mails one claim takes.
const BATCH: i64 = 16;
/// How long one SMTP conversation may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// One `.eml` file per mail in this folder.
    Files {
        folder: PathBuf,
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    /// Without the SMTP URL's credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp { from, .. } => write!(f, "Mailer::Smtp(from {from})"),
            Self::Files { folder, from } => write!(f, "Mailer::Files({}, from {from})", folder.display()),
        }
    }
}

impl Mailer {
    /// The sender every mail names unless the operator chose another (`--mail-from`).
    pub const DEFAULT_FROM: &str = "Nexus <no-reply@nexus.invalid>";

    /// SMTP at `url`, sending as `from`.
    pub fn smtp(url: &str, from: &str) -> Result<Self, MarketError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MarketError::Storage(format!("--smtp-url is not an SMTP URL ({e}); use smtp://host:port")))?
            .timeout(Some(TIMEOUT))
            .build();
        Ok(Self::Smtp { transport, from: sender(from)? })
    }

    /// `.eml` files in `folder`, created when the first mail is written.
    pub fn files(folder: PathBuf, from: &str) -> Result<Self, MarketError> {
        Ok(Self::Files { folder, from: sender(from)? })
    }

    fn from(&self) -> &Mailbox {
        match self {
            Self::Smtp { from, .. } | Self::Files { from, .. } => from,
        }
    }
}

fn sender(from: &str) -> Result<Mailbox, MarketError> {
    from.parse().map_err(|e| MarketError::Storage(format!("--mail-from `{from}` is not a mailbox ({e})")))
}

/// One mail to write into the outbox.
#[derive(Debug, Clone)]
pub struct Mail {
    /// What caused it (`verify`, `reset`, ...), for the outbox's readers.
    pub kind: &'static str,
    pub to: String,
    pub subject: String,
    /// Plain text.
    pub body: String,
}

/// Queues `mail` in the caller's transaction: it is sent only if that commits.
pub async fn enqueue(tx: &mut sqlx::AnyConnection, now: i64, mail: &Mail) -> Result<String, MarketError> {
    let id = String::from(MailId::random()?);
    sqlx::query(
        "INSERT INTO mail_outbox (id, kind, recipient, subject, body, state, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6)",
    )
    .bind(&id)
    .bind(mail.kind)
    .bind(&mail.to)
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// Queues `mail` (its `to` replaced) for each member of an organization with one of `roles`
/// and a confirmed address, in the caller's transaction; returns how many were queued.
pub async fn to_members(
    tx: &mut sqlx::AnyConnection,
    now: i64,
    org_kind: &str,
    org_id: &str,
    roles: &[&str],
    mail: &Mail,
) -> Result<usize, MarketError> {
    let placeholders = nexus_registry::db::placeholders(3, roles.len());
    let sql = format!(
        "SELECT p.email FROM memberships m JOIN people p ON p.id = m.person_id \
         WHERE m.org_kind = $1 AND m.org_id = $2 AND p.email_verified_at IS NOT NULL AND m.role IN ({placeholders}) \
         ORDER BY p.email"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(org_kind).bind(org_id);
    for role in roles {
        query = query.bind(*role);
    }
    let recipients = query.fetch_all(&mut *tx).await?;
    for to in &recipients {
        enqueue(tx, now, &Mail { to: to.clone(), ..mail.clone() }).await?;
    }
    Ok(recipients.len())
}

/// Who hears about money: owners, admins and finance.
pub const MONEY_ROLES: [&str; 3] = ["owner", "admin", "finance"];

#[derive(sqlx::FromRow)]
struct Claimed {
    id: String,
    kind: String,
    recipient: String,
    subject: String,
    body: String,
    attempts: i64,
}

/// Claims due mail, sends it and records each attempt; returns how many it claimed.
pub async fn send_due(market: &Market) -> Result<usize, MarketError> {
    let claimed = claim(market).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let sends = claimed.iter().map(|mail| send(&market.mailer, mail));
    let outcomes = futures_util::future::join_all(sends).await;
    settle(market, &claimed, outcomes).await?;
    Ok(claimed.len())
}

async fn claim(market: &Market) -> Result<Vec<Claimed>, MarketError> {
    let rows =
        crate::outbox::claim_due(market, "mail_outbox", "", "id, kind, recipient, subject, body, attempts", BATCH)
            .await?;
    Ok(rows.iter().map(Claimed::from_row).collect::<Result<_, _>>()?)
}

/// Sends one mail; the error says why not, without the body or the server's URL.
async fn send(mailer: &Mailer, mail: &Claimed) -> Result<(), String> {
    let to: Mailbox = mail.recipient.parse().map_err(|e| format!("the recipient is not a mailbox: {e}"))?;
    let message = Message::builder()
        .from(mailer.from().clone())
        .to(to)
        .subject(&mail.subject)
        .message_id(Some(format!("<{}@nexus>", mail.id)))
        .header(ContentType::TEXT_PLAIN)
        .body(body(&mail.body))
        .map_err(|e| format!("the mail could not be built: {e}"))?;
    match mailer {
        Mailer::Smtp { transport, .. } => {
            transport.send(message).await.map_err(|e| format!("the SMTP server refused it: {e}"))?;
        }
        Mailer::Files { folder, .. } => {
            tokio::fs::create_dir_all(folder).await.map_err(|e| format!("creating the outbox folder: {e}"))?;
            let path = folder.join(format!("{}.eml", mail.id));
            let partial = folder.join(format!("{}.eml.partial", mail.id));
            tokio::fs::write(&partial, message.formatted()).await.map_err(|e| format!("writing the mail: {e}"))?;
            tokio::fs::rename(&partial, &path).await.map_err(|e| format!("writing the mail: {e}"))?;
        }
    }
    Ok(())
}

/// ASCII text goes as it is (7bit, lines up to the 998 bytes RFC 5322 allows), so links
/// stay whole for any reader, the `.eml` files included; anything else in the encoding
/// lettre chooses (quoted-printable or base64).
fn body(text: &str) -> Body {
    let plain = text.is_ascii() && !text.contains('\0') && text.lines().all(|line| line.len() <= 998);
    if plain {
        let crlf = text.lines().collect::<Vec<_>>().join("\r\n") + "\r\n";
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
    } else {
        Body::new(text.to_string())
    }
}

async fn settle(market: &Market, claimed: &[Claimed], outcomes: Vec<Result<(), String>>) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    for (mail, outcome) in claimed.iter().zip(outcomes) {
        let (state, due, error) = match outcome {
            Ok(()) => ("sent", now, None),
            Err(error) if mail.attempts >= MAX_ATTEMPTS => ("dead", now, Some(error)),
            Err(error) => ("retrying", now + jittered(wait_before(mail.attempts)), Some(error)),
        };
        if let Some(error) = &error {
            tracing::warn!(mail = %mail.id, kind = %mail.kind, attempt = mail.attempts, %error, "mail not sent");
        }
        sqlx::query(
            "UPDATE mail_outbox SET state = $1, next_attempt_at = $2, last_error = $3, claimed_by = NULL, \
             sent_at = CASE WHEN $1 = 'sent' THEN $4 ELSE sent_at END \
             WHERE id = $5 AND state = 'running' AND claimed_by = $6",
        )
        .bind(state)
        .bind(due)
        .bind(error)
        .bind(now)
        .bind(&mail.id)
        .bind(process_id())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
