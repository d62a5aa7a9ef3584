//! `nexus serve` and `nexus publisher create`: the server, and the operator's way to create
//! a publisher with its first token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::runner::TenantLimits;
use crate::server::{self, ConnectionLimits, ServeConfig};

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
    };
    if args.demo {
        super::live_demo::serve(config).await?;
    } else {
        server::serve(config).await?;
    }
    Ok(ExitCode::SUCCESS)
}

impl Storage {
    /// A configuration for commands that only touch storage.
    fn config(self) -> ServeConfig {
        ServeConfig {
            data_dir: self.data_dir,
            database_url: self.database,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            tenant_limits: TenantLimits::default(),
            allow_private_networks: Vec::new(),
            connections: ConnectionLimits::default(),
        }
    }
}

#[derive(Debug, Args)]
pub struct OperatorTokenArgs {
    /// What the token is for, shown in the audit log.
    #[arg(long, default_value = "cli")]
    label: String,
    #[command(flatten)]
    storage: Storage,
}

/// Issues an operator token straight into the database: how the first operator gets in.
pub async fn operator_token(args: OperatorTokenArgs) -> anyhow::Result<ExitCode> {
    let registry = args.storage.config().registry().await?;
    let db = registry.db().clone();
    db.apply_migrations("marketplace_migrations", crate::market::SQLITE_MIGRATIONS, crate::market::POSTGRES_MIGRATIONS)
        .await?;
    let token = crate::accounts::issue_operator_token(&db, &args.label).await?;
    crate::audit::record(&db.pool, "cli", "token.issued", "operator", serde_json::json!({ "token": token.id })).await?;
    println!("token id  {}", token.id);
    println!("token     {}", token.secret);
    eprintln!("The token is shown once: export NEXUS_TOKEN=<token>");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CreatePublisherArgs {
    /// The namespace, such as `acme` (lowercase letters, digits, '-').
    name: String,
    /// The name shown to tenants.
    #[arg(long)]
    display_name: Option<String>,
    #[command(flatten)]
    storage: Storage,
}

pub async fn create_publisher(args: CreatePublisherArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.parse()?;
    let registry = args.storage.config().registry().await?;
    let token = registry.create_publisher(&name, args.display_name.as_deref().unwrap_or(&args.name)).await?;
    println!("created publisher {name}");
    println!("token id  {}", token.id);
    println!("token     {}", token.secret);
    eprintln!("The token is shown once. Give it to the publisher: export NEXUS_TOKEN=<token>");
    Ok(ExitCode::SUCCESS)
}
