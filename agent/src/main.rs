use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = scaivault_agent::cli::Cli::parse();
    scaivault_agent::cli::init_tracing(cli.log_json);
    match scaivault_agent::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            ExitCode::from(e.exit_code())
        }
    }
}
