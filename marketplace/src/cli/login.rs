//! `nexus login`, `nexus logout` and `nexus whoami`: a person signs in with their email
//! address, password and (when they have one) authenticator code, and the token the server
//! issues for one of their organizations is saved under a profile, so no one passes
//! `NEXUS_TOKEN` around by hand. Every command that talks to a server takes `--profile`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Connection, decode, unreachable_server};
use super::profiles::{self, Profile};
use crate::ids::TokenId;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The Nexus server.
    #[arg(long, env = "NEXUS_REGISTRY", default_value = profiles::LOCAL)]
    registry: String,
    /// The name to save the sign-in under.
    #[arg(long, env = "NEXUS_PROFILE", default_value = profiles::DEFAULT)]
    profile: String,
    /// Your email address (asked for when missing).
    #[arg(long, env = "NEXUS_EMAIL")]
    email: Option<String>,
    /// Read the password from the first line of stdin instead of asking for it.
    #[arg(long)]
    password_stdin: bool,
    /// Your authenticator's code, or a recovery code (asked for when needed).
    #[arg(long)]
    code: Option<String>,
    /// The organization to act for: `tenant:<id>`, `publisher:<name>` or `operator`
    /// [default: your first].
    #[arg(long)]
    organization: Option<String>,
    /// Names the token in the organization's lists [default: `nexus login on <host>`].
    #[arg(long)]
    label: Option<String>,
}

/// The server's answer to `POST /v1/login`.
#[derive(Debug, Deserialize)]
struct LoggedIn {
    token_id: TokenId,
    secret: String,
    organization: String,
    role: String,
    email: String,
    scopes: Vec<String>,
    expires_at: i64,
}

fn ask(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// The password: the first line of stdin with `--password-stdin`, else asked for on the
/// terminal.
fn password(from_stdin: bool, interactive: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    } else if interactive {
        Ok(rpassword::prompt_password("Password: ")?)
    } else {
        anyhow::bail!("no password: pass --password-stdin and write it to stdin, or run in a terminal to be asked")
    }
}

/// The token's label when `--label` is not given: `nexus login on <host>`.
fn default_label() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    match host.trim() {
        "" => "nexus login".to_string(),
        host => format!("nexus login on {host}"),
    }
}

pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    let email = match args.email {
        Some(email) => email,
        None if interactive => ask("Email")?,
        None => anyhow::bail!("no email address: pass --email or set NEXUS_EMAIL"),
    };
    let password = password(args.password_stdin, interactive)?;
    let label = args.label.unwrap_or_else(default_label);
    let url = format!("{}/v1/login", args.registry.trim_end_matches('/'));
    let mut code = args.code;
    let logged_in: LoggedIn = loop {
        let body = json!({ "email": email, "password": password, "code": code,
                           "organization": args.organization, "label": label });
        let response = reqwest::Client::new()
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable_server(&args.registry, &e))?;
        let needs_code = response.status() == reqwest::StatusCode::UNAUTHORIZED && code.is_none();
        match decode(response).await {
            Ok(logged_in) => break logged_in,
            Err(error) if needs_code && interactive && error.to_string().contains("[second_factor_required]") => {
                code = Some(ask("Authenticator code (or a recovery code)")?);
            }
            Err(error) => return Err(error),
        }
    };
    let profile = Profile {
        registry: args.registry.trim_end_matches('/').to_string(),
        token: logged_in.secret,
        token_id: logged_in.token_id.to_string(),
        organization: logged_in.organization.clone(),
        email: logged_in.email.clone(),
        expires_at: logged_in.expires_at,
    };
    let path = profiles::save(&args.profile, profile)?;
    println!(
        "Signed in to {} as {}: {} ({}; scopes: {}).",
        args.registry,
        logged_in.email,
        logged_in.organization,
        logged_in.role,
        if logged_in.scopes.is_empty() { "none, reading only".to_string() } else { logged_in.scopes.join(", ") }
    );
    println!(
        "Token {} saved as profile `{}` in {} (until {}); `nexus logout` ends it.",
        logged_in.token_id,
        args.profile,
        path.display(),
        nexus_money::period::day_label(logged_in.expires_at)
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    connection: Connection,
}

pub async fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let connection = &args.connection;
    let saved = profiles::load(&connection.profile)?;
    if saved.is_none() && connection.token.is_none() {
        println!("Not signed in under profile `{}`: nothing to do.", connection.profile);
        return Ok(ExitCode::SUCCESS);
    }
    let response = connection
        .client()
        .post(connection.url("/v1/logout"))
        .bearer_auth(connection.token()?)
        .send()
        .await
        .map_err(|e| unreachable_server(&connection.server(), &e))?;
    let ended = if response.status().is_success() {
        "revoked".to_string()
    } else {
        match decode::<Value>(response).await {
            Err(error)
                if ["[token_revoked]", "[token_expired]", "[unauthenticated]"]
                    .iter()
                    .any(|code| error.to_string().contains(code)) =>
            {
                "had already ended".to_string()
            }
            Err(error) => return Err(error),
            Ok(_) => "revoked".to_string(),
        }
    };
    // An explicit --token is not the profile's: the profile stays.
    if connection.token.is_none() && profiles::remove(&connection.profile)? {
        println!("Signed out: the token {ended}, and profile `{}` is forgotten.", connection.profile);
    } else {
        println!("Signed out: the token {ended}.");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    connection: Connection,
}

pub async fn whoami(args: WhoamiArgs) -> anyhow::Result<ExitCode> {
    let connection = &args.connection;
    let me: Value = connection.send(connection.client().get(connection.url("/v1/whoami"))).await?;
    let text = |field: &str| me[field].as_str().map(str::to_string);
    let organization = match (text("tenant"), text("publisher")) {
        (Some(tenant), _) => format!("tenant:{tenant}"),
        (None, Some(publisher)) => format!("publisher:{publisher}"),
        (None, None) => me["role"].as_str().unwrap_or("unknown").to_string(),
    };
    let scopes: Vec<&str> = me["scopes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    println!("server        {}", connection.server());
    println!("organization  {organization}");
    println!("person        {}", text("person").unwrap_or_else(|| "none (a machine's token)".into()));
    println!("token         {}", text("token_id").unwrap_or_default());
    println!("scopes        {}", if scopes.is_empty() { "none (reads only)".to_string() } else { scopes.join(", ") });
    if let Some(created_by) = text("created_by") {
        println!("created by    {created_by}");
    }
    if connection.token.is_none()
        && let Some(saved) = profiles::load(&connection.profile)?
    {
        println!("profile       {} (until {})", connection.profile, nexus_money::period::day_label(saved.expires_at));
    }
    Ok(ExitCode::SUCCESS)
}
