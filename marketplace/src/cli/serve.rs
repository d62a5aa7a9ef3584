//! `nexus serve` and `nexus publisher create`: the server, and the operator's way to create
//! a publisher with its first token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use nexus_registry::publishers::Issuer;

use crate::runner::TenantLimits;
use crate::server::{self, ConnectionLimits, ServeConfig};

/// How the audit log names what was made on the server's own disk (`nexus operator token`,
/// `nexus publisher create`).
const COMMAND_LINE: &str = "command-line";

#[derive(Debug, Clone, Args)]
pub struct Storage {
    /// The data folder (SQLite database and artifacts).
    #[arg(long, env = "NEXUS_DATA_DIR", default_value = "nexus-data")]
    pub data_dir: PathBuf,
    /// A postgres:// URL, so several `nexus serve` nodes share one database.
    #[arg(long, env = "NEXUS_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    storage: Storage,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL clients use to reach this server, for links in answers.
    #[arg(long)]
    public_url: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Let plugins' outbound HTTP reach this internal range (CIDR, repeatable), such as
    /// 127.0.0.0/8 for local development. By default loopback, private, link-local,
    /// unique-local and metadata addresses are refused, whatever a manifest lists.
    #[arg(long = "allow-private-network", value_name = "CIDR")]
    allow_private_networks: Vec<ipnet::IpNet>,
    /// Client connections open at once; more wait until one closes.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive
    /// connection stays open).
    #[arg(long, default_value_t = ConnectionLimits::default().header_timeout.as_secs())]
    header_timeout_secs: u64,
    /// Seed a demo marketplace (publishers, signed sample plugins, tenants, installs) and
    /// keep events flowing, printing tokens to try the API with.
    #[arg(long)]
    pub demo: bool,
    /// Seconds between billing runs on this node (0: never; run `nexus billing run`).
    #[arg(long, default_value_t = 60)]
    billing_interval_secs: u64,
    /// Seconds between payout runs on this node (0: never; run `nexus payouts run`). A run
    /// pays each partner at most once per payout period.
    #[arg(long, default_value_t = 3600)]
    payout_interval_secs: u64,
    /// When payout periods turn: twice-monthly (1st–15th, 16th–end) or monthly.
    #[arg(long, default_value = "twice-monthly")]
    payout_schedule: crate::billing::payouts::Schedule,
    /// Send mail to people (confirmation and reset links) through this SMTP server:
    /// smtp://host:port, smtp://host:port?tls=required (STARTTLS) or smtps://user:pass@host.
    /// Without it, mail is written to <data-dir>/outbox/ as .eml files.
    #[arg(long, env = "NEXUS_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// The sender of that mail.
    #[arg(long, default_value = crate::mail::Mailer::DEFAULT_FROM)]
    mail_from: String,
}

/// Per-tenant admission of events.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Events each tenant may send per second (sustained).
    #[arg(long, default_value_t = TenantLimits::default().events_per_second)]
    tenant_rate: u32,
    /// Events each tenant may send in a burst above the rate.
    #[arg(long, default_value_t = TenantLimits::default().burst)]
    tenant_burst: u32,
    /// Events (or direct invocations) each tenant may have in flight; more wait up to 2 s, then get 429.
    #[arg(long, default_value_t = TenantLimits::default().in_flight)]
    tenant_in_flight: usize,
}

impl LimitArgs {
    fn limits(&self) -> TenantLimits {
        TenantLimits {
            events_per_second: self.tenant_rate,
            burst: self.tenant_burst,
            in_flight: self.tenant_in_flight,
            ..TenantLimits::default()
        }
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig {
        data_dir: args.storage.data_dir,
        database_url: args.storage.database,
        listen: args.listen,
        public_url: args.public_url,
        tenant_limits: args.limits.limits(),
        allow_private_networks: args.allow_private_networks,
        connections: ConnectionLimits {
            max_connections: args.max_connections,
            header_timeout: std::time::Duration::from_secs(args.header_timeout_secs.max(1)),
            ..ConnectionLimits::default()
        },
        billing_every: (args.billing_interval_secs > 0)
            .then(|| std::time::Duration::from_secs(args.billing_interval_secs)),
        payouts_every: (args.payout_interval_secs > 0)
            .then(|| std::time::Duration::from_secs(args.payout_interval_secs)),
        payout_schedule: args.payout_schedule,
        clock_offset_ms: clock_offset_ms()?,
        smtp_url: args.smtp_url,
        mail_from: args.mail_from,
    };
    if args.demo {
        super::live_demo::serve(config).await?;
    } else {
        server::serve(config).await?;
    }
    Ok(ExitCode::SUCCESS)
}

impl Storage {
    /// [`Storage::config`] of a marketplace that exists: a data folder without a database is
    /// refused (run from another folder, the default `nexus-data` would silently be a new,
    /// empty marketplace whose tokens no server knows), unless `init` asks to create it.
    fn existing(&self, init: bool) -> anyhow::Result<ServeConfig> {
        let database = self.data_dir.join("registry.db");
        if self.database.is_none() && !init && !database.exists() {
            anyhow::bail!(
                "no marketplace in {}: point --data-dir (or NEXUS_DATA_DIR) at the folder `nexus serve` uses, \
                 or pass --init to create one there",
                self.data_dir.display()
            );
        }
        Ok(self.clone().config())
    }

    /// Where the data is, for messages.
    fn describe(&self) -> String {
        match &self.database {
            Some(_) => "the PostgreSQL database of --database".into(),
            None => format!("{}", self.data_dir.display()),
        }
    }

    /// A configuration for commands that only touch storage.
    pub(crate) fn config(self) -> ServeConfig {
        ServeConfig {
            data_dir: self.data_dir,
            database_url: self.database,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            tenant_limits: TenantLimits::default(),
            allow_private_networks: Vec::new(),
            connections: ConnectionLimits::default(),
            billing_every: None,
            payouts_every: None,
            payout_schedule: Default::default(),
            clock_offset_ms: clock_offset_ms().unwrap_or(0),
            smtp_url: None,
            mail_from: crate::mail::Mailer::DEFAULT_FROM.into(),
        }
    }
}

/// `NEXUS_CLOCK_OFFSET_MS`: milliseconds the billing clock runs ahead (or, negative, behind)
/// the system's, for demos and tests of real processes. Unset in production.
fn clock_offset_ms() -> anyhow::Result<i64> {
    match std::env::var("NEXUS_CLOCK_OFFSET_MS") {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("NEXUS_CLOCK_OFFSET_MS must be a whole number of milliseconds, not `{text}`")),
        Err(_) => Ok(0),
    }
}

#[derive(Debug, Args)]
pub struct OperatorTokenArgs {
    /// What the token is for, shown in the audit log.
    #[arg(long, default_value = "cli")]
    label: String,
    /// Create the data folder's database if it has none yet (before the first `nexus serve`).
    #[arg(long)]
    init: bool,
    #[command(flatten)]
    storage: Storage,
}

/// Issues an operator token straight into the database: how the first operator gets in.
pub async fn operator_token(args: OperatorTokenArgs) -> anyhow::Result<ExitCode> {
    let registry = args.storage.existing(args.init)?.registry().await?;
    let db = registry.db().clone();
    db.apply_migrations("marketplace_migrations", crate::market::SQLITE_MIGRATIONS, crate::market::POSTGRES_MIGRATIONS)
        .await?;
    let token = crate::accounts::issue_operator_token(&db, &args.label, None, &Issuer::by(COMMAND_LINE)).await?;
    crate::audit::record(db.writer(), "cli", "token.issued", "operator", serde_json::json!({ "token": token.id }))
        .await?;
    println!("issued an operator token in {}", args.storage.describe());
    println!("token id  {}", token.id);
    println!("token     {}", token.secret);
    eprintln!("The token is shown once: export NEXUS_TOKEN=<token>");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct OperatorDevTenantArgs {
    /// The publisher whose development versions the tenant may install.
    publisher: String,
    /// The tenant that tries them (one the publisher's people use for that).
    tenant: String,
    #[command(flatten)]
    storage: Storage,
}

/// Links a development tenant to a publisher, straight in the database: `nexus dev
/// --marketplace --registry <this server>` then publishes development versions there.
pub async fn operator_dev_tenant(args: OperatorDevTenantArgs) -> anyhow::Result<ExitCode> {
    let market = args.storage.existing(false)?.market().await?;
    let caller = crate::accounts::Caller::Operator { token_id: COMMAND_LINE.into() };
    crate::dev_versions::link(&market, &caller, &args.publisher, &args.tenant.parse()?).await?;
    println!(
        "tenant {} may install {}'s development versions (published by `nexus dev --marketplace --registry …`)",
        args.tenant, args.publisher
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct OperatorPersonArgs {
    /// The operator's email address (their sign-in).
    #[arg(long)]
    email: String,
    /// Their name, as members and the audit log show it.
    #[arg(long)]
    name: String,
    /// Read the password from the first line of stdin instead of asking for it.
    #[arg(long)]
    password_stdin: bool,
    /// Create the data folder's database if it has none yet (before the first `nexus serve`).
    #[arg(long)]
    init: bool,
    #[command(flatten)]
    storage: Storage,
}

/// Adds a person to the operators, as an owner, straight into the database: how the first
/// operator signs in with a password. They set up two-step sign-in at their first sign-in
/// (operators must), and invite further operators from the console.
pub async fn operator_person(args: OperatorPersonArgs) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, IsTerminal};
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password for the new operator: ")?
    } else {
        anyhow::bail!("no password: pass --password-stdin and write it to stdin, or run in a terminal to be asked")
    };
    let registry = args.storage.existing(args.init)?.registry().await?;
    let db = registry.db().clone();
    db.apply_migrations("marketplace_migrations", crate::market::SQLITE_MIGRATIONS, crate::market::POSTGRES_MIGRATIONS)
        .await?;
    let operators = ("operator", crate::people::login::OPERATORS);
    let now = nexus_registry::db::now_ms();
    let person = crate::people::insert_confirmed(
        &db,
        now,
        &args.email,
        &args.name,
        &password,
        operators,
        crate::people::Role::Owner,
    )
    .await?;
    println!("added operator {} ({person}) in {}", args.email.trim().to_lowercase(), args.storage.describe());
    eprintln!("They sign in at <server>/console/sign-in and set up two-step sign-in first (operators must).");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CreatePublisherArgs {
    /// The namespace, such as `acme` (lowercase letters, digits, '-').
    name: String,
    /// The name shown to tenants.
    #[arg(long)]
    display_name: Option<String>,
    /// Create the data folder's database if it has none yet (before the first `nexus serve`).
    #[arg(long)]
    init: bool,
    #[command(flatten)]
    storage: Storage,
}

pub async fn create_publisher(args: CreatePublisherArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.parse()?;
    let registry = args.storage.existing(args.init)?.registry().await?;
    let token =
        registry.create_publisher(&name, args.display_name.as_deref().unwrap_or(&args.name), COMMAND_LINE).await?;
    println!("created publisher {name} in {}", args.storage.describe());
    println!("token id  {}", token.id);
    println!("token     {}", token.secret);
    eprintln!("The token is shown once. Give it to the publisher: export NEXUS_TOKEN=<token>");
    Ok(ExitCode::SUCCESS)
}
