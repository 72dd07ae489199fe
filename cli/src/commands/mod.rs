//! One module per command group; each command returns what to print.

mod audit;
mod events;
mod policies;
mod rotation;
mod secrets;
mod system;
mod tokens;
mod webhooks;

use scaivault_client::{Client, ClientBuilder};

use crate::args::{Cli, Command, OutputFormat};
use crate::failure::Failure;
use crate::output::Output;

/// Builds the client from the global flags and runs the command.
pub async fn run(cli: Cli) -> Result<Output, Failure> {
    let client = client(&cli)?;
    let format = cli.output;
    match cli.command {
        Command::Secrets(command) => secrets::run(&client, format, command).await,
        Command::Whoami => system::whoami(&client, format).await,
        Command::Health { detailed, ready } => {
            system::health(&client, format, detailed, ready).await
        }
        Command::Tokens(command) => tokens::run(&client, format, command).await,
        Command::Login(command) => tokens::login(&client, format, command).await,
        Command::Keys(command) => system::keys(&client, format, command).await,
        Command::Policies(command) => policies::run(&client, format, command).await,
        Command::Identities(command) => policies::identities(&client, format, command).await,
        Command::Audit(command) => audit::run(&client, format, command).await,
        Command::Rotation(command) => rotation::run(&client, format, command).await,
        Command::Events(command) => events::run(&client, format, command).await,
        Command::Webhooks(command) => webhooks::run(&client, format, command).await,
    }
}

fn client(cli: &Cli) -> Result<Client, Failure> {
    let mut builder = ClientBuilder::new(cli.address.clone()).max_retries(cli.max_retries);
    if let Some(token) = &cli.token {
        builder = builder.token(token.clone());
    }
    if let Some(ca_cert) = &cli.ca_cert {
        builder = builder.ca_cert_file(ca_cert);
    }
    Ok(builder.build()?)
}

/// JSON for programs, or the table rendering for people.
fn render<T: serde::Serialize>(
    format: OutputFormat,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<Output, Failure> {
    match format {
        OutputFormat::Json => crate::output::json(value),
        OutputFormat::Table => Ok(Output::text(table(value))),
    }
}

/// 204 answers: a sentence for people, nothing for programs (there is no document).
fn done(format: OutputFormat, sentence: String) -> Output {
    match format {
        OutputFormat::Table => Output::text(sentence),
        OutputFormat::Json => Output::default(),
    }
}
