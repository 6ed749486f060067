//! `convene`: the Convene meeting server in one binary.
//!
//! `convene serve` runs the media plane (SFU), the signaling front end and the web app on one HTTP
//! listener with embedded defaults. See `convene --help` and `config/convene.toml`.

mod admin_cli;
mod audit_cli;
mod billing_cli;
mod config;
mod gateway_cli;
mod http;
mod serve;
mod sip;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Convene: a self-hosted meeting server.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: web app, signaling and media on this machine.
    ///
    /// Settings come from flags, then CONVENE_* environment variables, then --config FILE, then
    /// built-in defaults. Log verbosity follows RUST_LOG (default: info).
    // Boxed: the serve flags outweigh every other subcommand's.
    Serve(Box<config::ServeArgs>),
    /// Manage the deployment's administrators (principals) and their access keys.
    #[command(subcommand)]
    Admin(admin_cli::AdminCommand),
    /// Deliver, verify and search the admin API's audit trail.
    #[command(subcommand)]
    Audit(audit_cli::AuditCommand),
    /// Billing exports (Active Pro).
    #[command(subcommand)]
    Billing(billing_cli::BillingCommand),
    /// The SIP gateway of a running server: its live calls.
    #[command(subcommand)]
    Gateway(gateway_cli::GatewayCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Admin(command) => runtime()?.block_on(admin_cli::run(command)),
        Command::Audit(command) => runtime()?.block_on(audit_cli::run(command)),
        Command::Billing(command) => runtime()?.block_on(billing_cli::run(command)),
        Command::Gateway(command) => gateway_cli::run(command),
        Command::Serve(args) => {
            let config = args.resolve()?;
            tracing::info!(?config, "starting");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve::run(config))
        }
    }
}
