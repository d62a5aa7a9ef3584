//! The `nexus` command line: argument parsing and dispatch. Each subcommand lives in its
//! own module under `cli/`.

mod builder;
mod client;
mod demo;
mod events;
mod health;
mod install;
mod keys;
mod live_demo;
mod login;
mod media;
mod money;
mod output;
mod plugin_run;
mod profiles;
mod publish;
mod reviews;
mod serve;
mod webhooks;
mod yank;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "nexus", version, about = "Nexus plugin marketplace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a plugin project (Rust, Python or JavaScript) from a template.
    New(builder::new::NewArgs),
    /// Build the plugin project's component with its language's toolchain.
    Build(builder::BuildArgs),
    /// Build, check and test the project, and again on every change.
    Dev(builder::DevArgs),
    /// Work with a plugin component locally.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run every sample and hostile plugin through the host and show the outcomes.
    Demo,
    /// Run the marketplace server.
    Serve(serve::ServeArgs),
    /// Sign in with your email address and save the token under a profile.
    Login(login::LoginArgs),
    /// End the profile's token and forget it.
    Logout(login::LogoutArgs),
    /// Who the token (or the profile's) acts as.
    Whoami(login::WhoamiArgs),
    /// Publish a plugin version: build, sign, upload.
    Publish(Box<publish::PublishArgs>),
    /// Yank a published version.
    Yank(yank::YankArgs),
    /// Your listing between versions: its icon and screenshots, its text and links.
    #[command(subcommand)]
    Listing(ListingCommand),
    /// Manage your publisher's signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Operator commands for publishers.
    #[command(subcommand)]
    Publisher(PublisherCommand),
    /// Operator commands for tenants.
    #[command(subcommand)]
    Tenant(install::TenantCommand),
    /// Install a plugin for your tenant, after reviewing what it asks for.
    Install(install::InstallArgs),
    /// List your tenant's installs.
    Installs(install::InstallsArgs),
    /// Send events to your installs.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Your tenant's webhook endpoints: add, list, rotate a secret, read the log, remove.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Operator commands with direct database access.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// A plugin's plans: list them, or (its publisher) add, revise and retire them.
    #[command(subcommand)]
    Plans(money::PlansCommand),
    /// Change an install's plan (prorated).
    #[command(subcommand)]
    Plan(money::PlanCommand),
    /// Pay an install's failed charges now.
    Settle(money::SettleArgs),
    /// List charges: your tenant's, or (operators) anyone's.
    Charges(money::ChargesArgs),
    /// A tenant's bill for a month, as a table or CSV.
    Bill(money::BillArgs),
    /// Usage so far this period and what it would be charged now: an install's (tenants), or
    /// every install of a plugin (its publisher).
    Usage(money::UsageArgs),
    /// A partner's sales and balance, as a table or CSV.
    Sales(money::SalesArgs),
    /// Refund part of a collected charge (operators).
    Refund(money::RefundArgs),
    /// Billing (operators).
    #[command(subcommand)]
    Billing(money::BillingCommand),
    /// The ledger (operators).
    #[command(subcommand)]
    Ledger(money::LedgerCommand),
    /// A partner's statements: the months, or one month line by line (table or CSV).
    Statements(money::StatementsArgs),
    /// Payouts: run them (operators), or list a partner's with what each settles.
    #[command(subcommand)]
    Payouts(money::PayoutsCommand),
    /// GMV, refunds, net revenue and take rate by period (operators; partners their own).
    Gmv(money::GmvArgs),
    /// Ratings and reviews: read, write, reply, hide.
    #[command(subcommand)]
    Reviews(reviews::ReviewsCommand),
}

#[derive(Debug, Subcommand)]
enum ListingCommand {
    /// Replace a listing's icon and screenshots without publishing a version, or list them.
    Media(media::MediaArgs),
    /// Change a listing's summary, description (Markdown, from a file) or links until the
    /// next version brings its manifest's.
    Edit(reviews::EditArgs),
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Issue an operator API token (printed once), straight into the database.
    Token(serve::OperatorTokenArgs),
    /// Add a person to the operators (they sign in with a password and two steps).
    Person(serve::OperatorPersonArgs),
    /// Let a tenant install a publisher's development versions (`nexus dev --marketplace`).
    DevTenant(serve::OperatorDevTenantArgs),
}

#[derive(Debug, Subcommand)]
enum PublisherCommand {
    /// Create a publisher (namespace) and print its first API token, once.
    Create(serve::CreatePublisherArgs),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin on one event exactly as the marketplace would, and print the outcome,
    /// logs and resource figures.
    Run(Box<plugin_run::RunArgs>),
    /// Check a project's component and manifest with the registry's publish rules, the
    /// host's limits and describe(), before uploading anything.
    Check(builder::check::CheckArgs),
    /// Run the project's sample events (events/*.json) through the real host and compare
    /// each with what it expects.
    Test(builder::cases::TestArgs),
    /// Rewrite the project's wit/ from the capabilities nexus.toml declares.
    Wit(builder::WitArgs),
    /// How each published version of your plugin is doing: invocations, error rate and
    /// codes, across all installs.
    Health(health::HealthArgs),
}

/// Exit codes: 0 success, 1 the plugin's invocation failed, 2 the command could not run.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs one parsed command.
async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::New(args) => builder::new::run(args),
        Command::Build(args) => builder::build(args),
        Command::Dev(args) => builder::dev(args).await,
        Command::Plugin(PluginCommand::Run(args)) => plugin_run::run(*args).await,
        Command::Plugin(PluginCommand::Check(args)) => builder::check::run(args).await,
        Command::Plugin(PluginCommand::Test(args)) => builder::cases::run(args).await,
        Command::Plugin(PluginCommand::Wit(args)) => builder::wit(args),
        Command::Plugin(PluginCommand::Health(args)) => health::run(args).await,
        Command::Demo => demo::run().await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Login(args) => login::login(args).await,
        Command::Logout(args) => login::logout(args).await,
        Command::Whoami(args) => login::whoami(args).await,
        Command::Publish(args) => publish::run(*args).await,
        Command::Yank(args) => yank::run(args).await,
        Command::Listing(ListingCommand::Media(args)) => media::run(args).await,
        Command::Listing(ListingCommand::Edit(args)) => reviews::listing(args).await,
        Command::Keys(command) => keys::run(command).await,
        Command::Publisher(PublisherCommand::Create(args)) => serve::create_publisher(args).await,
        Command::Tenant(command) => install::tenant(command).await,
        Command::Install(args) => install::install(args).await,
        Command::Installs(args) => install::list(args).await,
        Command::Events(command) => events::run(command).await,
        Command::Webhooks(command) => webhooks::run(command).await,
        Command::Operator(OperatorCommand::Token(args)) => serve::operator_token(args).await,
        Command::Operator(OperatorCommand::Person(args)) => serve::operator_person(args).await,
        Command::Operator(OperatorCommand::DevTenant(args)) => serve::operator_dev_tenant(args).await,
        Command::Plans(command) => money::plans(command).await,
        Command::Plan(command) => money::change_plan(command).await,
        Command::Settle(args) => money::settle(args).await,
        Command::Charges(args) => money::charges(args).await,
        Command::Bill(args) => money::bill(args).await,
        Command::Usage(args) => money::usage(args).await,
        Command::Reviews(command) => reviews::run(command).await,
        Command::Sales(args) => money::sales(args).await,
        Command::Refund(args) => money::refund(args).await,
        Command::Billing(command) => money::billing(command).await,
        Command::Ledger(command) => money::ledger(command).await,
        Command::Statements(args) => money::statements(args).await,
        Command::Payouts(command) => money::payouts(command).await,
        Command::Gmv(args) => money::gmv(args).await,
    }
}

/// Logs go to stderr, filtered by `NEXUS_LOG` (e.g. `info`, `nexus_marketplace=debug,tower_http=debug`
/// for every request), as JSON lines when `NEXUS_LOG_FORMAT=json`. The server says what it
/// does at `info`; client commands only warn.
fn init_logging(server: bool) {
    let default = if server { "warn,nexus_marketplace=info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEXUS_LOG").unwrap_or_else(|_| default.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("NEXUS_LOG_FORMAT").is_ok_and(|format| format == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
}
