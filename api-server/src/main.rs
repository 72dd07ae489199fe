use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = scaivault_server::config::Cli::parse();
    match scaivault_server::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
