//! The `scaivault` command-line tool: argument parsing, commands, rendering.

pub mod args;
mod commands;
mod failure;
mod input;
mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use failure::Failure;

use crate::args::Cli;
use crate::output::Output;

/// Parses the command line, runs the command, prints its output, returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version are "errors" too, printed to stdout with exit code 0.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(failure::EXIT_USAGE));
        }
    };
    match run(cli) {
        Ok(output) => {
            print(&output);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            if let Some(report) = failure.report() {
                // The health document, the denied test, ...: still the useful answer.
                print(&Output::text(report.to_owned()));
            }
            if let Some(message) = failure.message() {
                let _ = writeln!(std::io::stderr(), "{message}");
            }
            failure.exit_code()
        }
    }
}

/// Runs a parsed command on a fresh single-threaded runtime.
pub fn run(cli: Cli) -> Result<Output, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Local(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(commands::run(cli))
}

/// Writes the output; a closed pipe (`scaivault ... | head`) is not an error worth a panic.
fn print(output: &Output) {
    let _ = std::io::stdout().write_all(output.stdout.as_bytes());
    if let Some(note) = &output.note {
        let _ = writeln!(std::io::stderr(), "{note}");
    }
}
