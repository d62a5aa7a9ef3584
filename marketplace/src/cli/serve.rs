//! `nexus serve` and `nexus publisher create`: the server, and the operator's way to create
//! a publisher with its first token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::server::{self, ServeConfig};

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
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig {
        data_dir: args.storage.data_dir,
        database_url: args.storage.database,
        listen: args.listen,
        public_url: args.public_url,
        tenant_limits: Default::default(),
    };
    server::serve(config).await?;
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
    let config = ServeConfig {
        data_dir: args.storage.data_dir,
        database_url: args.storage.database,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        tenant_limits: Default::default(),
    };
    let registry = config.registry().await?;
    let token = registry.create_publisher(&name, args.display_name.as_deref().unwrap_or(&args.name)).await?;
    println!("created publisher {name}");
    println!("token id  {}", token.id);
    println!("token     {}", token.secret);
    eprintln!("The token is shown once. Give it to the publisher: export NEXUS_TOKEN=<token>");
    Ok(ExitCode::SUCCESS)
}
