use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let args = scaivault_injector::config::Args::parse();
    let filter =
        EnvFilter::try_from_env("SCAIVAULT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .init();
    }
    if let Err(e) = scaivault_injector::run::run(args).await {
        tracing::error!(error = format!("{e:#}"), "exiting");
        std::process::exit(1);
    }
}
