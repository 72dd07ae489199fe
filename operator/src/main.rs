use clap::Parser;
use tracing_subscriber::EnvFilter;

// One thread for the controllers (and the metrics server): on 2 cores the default runtime's
// workers and blocking threads each got a malloc arena of their own, and the burst after a
// cold sync left them fragmented (bench/README.md, "Memory"). The work is bound by the
// apiserver's rate limit, not by CPU. The lease renews on a thread of its own (`lease`).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = scaivault_operator::config::Args::parse();
    let filter =
        EnvFilter::try_from_env("SCAIVAULT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        // Colours only for a terminal: logs in files and `kubectl logs` stay plain.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .init();
    }
    if let Err(e) = scaivault_operator::run::run(args).await {
        tracing::error!(error = format!("{e:#}"), "exiting");
        // Exit now: tasks that are still running (the metrics server, in-flight requests)
        // must not keep a process that can no longer lead alive.
        std::process::exit(1);
    }
}
