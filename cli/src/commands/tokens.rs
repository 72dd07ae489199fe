//! `scaivault tokens ...`

use scaivault_api::auth::{CreateTokenRequest, CreateTokenResponse};
use scaivault_client::{Client, SecretString};

use super::render;
use crate::args::{LoginCommand, OutputFormat, TokensCommand};
use crate::failure::Failure;
use crate::output::{Output, Table, opt_text, opt_time, pairs, time};

pub async fn run(
    client: &Client,
    format: OutputFormat,
    command: TokensCommand,
) -> Result<Output, Failure> {
    match command {
        TokensCommand::Create {
            identity,
            ttl,
            display_name,
        } => {
            let request = CreateTokenRequest {
                identity_id: identity,
                ttl,
                display_name,
            };
            let created = client.create_token(&request).await?;
            show_created(format, &created)
        }
        TokensCommand::List => {
            let tokens = client.list_tokens().await?;
            render(format, &tokens, |t| {
                let mut table = Table::with_header([
                    "ACCESSOR",
                    "IDENTITY",
                    "TYPE",
                    "ISSUED_AT",
                    "EXPIRES_AT",
                    "NAME",
                ]);
                for token in &t.tokens {
                    table.row(vec![
                        token.accessor.clone(),
                        token.identity_id.clone(),
                        token.identity_type.as_str().to_owned(),
                        time(&token.issued_at),
                        opt_time(&token.expires_at),
                        opt_text(&token.display_name),
                    ]);
                }
                table.render()
            })
        }
        TokensCommand::Revoke { accessor } => {
            client.revoke_token(&accessor).await?;
            Ok(match format {
                OutputFormat::Table => Output::text(format!("Revoked token {accessor}\n")),
                OutputFormat::Json => Output::default(),
            })
        }
    }
}

/// `scaivault login kubernetes`: the JWT is read from a file so it never sits in the
/// shell history or the process list.
pub async fn login(
    client: &Client,
    format: OutputFormat,
    command: LoginCommand,
) -> Result<Output, Failure> {
    let LoginCommand::Kubernetes { jwt_file, role } = command;
    let jwt = std::fs::read_to_string(&jwt_file)
        .map_err(|e| Failure::Local(format!("cannot read {}: {e}", jwt_file.display())))?;
    let jwt = SecretString::from(jwt.trim().to_owned());
    let created = client.login_kubernetes(&jwt, role.as_deref()).await?;
    show_created(format, &created)
}

/// Printing the token is the point of these commands; the server never shows it again.
fn show_created(format: OutputFormat, created: &CreateTokenResponse) -> Result<Output, Failure> {
    let output = render(format, created, |t| {
        pairs(&[
            ("token", t.token.clone()),
            ("accessor", t.accessor.clone()),
            ("identity_id", t.identity_id.clone()),
            ("identity_type", t.identity_type.as_str().to_owned()),
            ("issued_at", time(&t.issued_at)),
            ("expires_at", opt_time(&t.expires_at)),
        ])
    })?;
    Ok(output.with_note("The token is shown only once: store it now."))
}
