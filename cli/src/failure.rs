//! Why a command failed, how that is shown, and the exit code it maps to.

use std::process::ExitCode;

/// Exit code of every failure except usage mistakes.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of usage mistakes, as clap uses for its own.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `policies test` when the permission is denied.
pub const EXIT_DENIED: u8 = 3;

#[derive(Debug)]
pub enum Failure {
    /// From the client: an API error, a transport error, a rejected input.
    Client(scaivault_client::Error),
    /// The command line is wrong in a way clap cannot see (duplicate fields, ...).
    Usage(String),
    /// Something on this machine: an unreadable file, a missing field.
    Local(String),
    /// The server answered a health check with a status other than ok; `report` is
    /// the rendered health document, still printed to stdout.
    Unhealthy { status: String, report: String },
    /// The command worked and its answer is a "no" (a denied what-if test, a broken audit
    /// chain, a failed export): `report` still goes to stdout, `message` (if any) to
    /// stderr, and the exit code says which "no" it was.
    Verdict {
        report: String,
        message: Option<String>,
        exit: u8,
    },
}

impl From<scaivault_client::Error> for Failure {
    fn from(err: scaivault_client::Error) -> Failure {
        Failure::Client(err)
    }
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Usage(_) => ExitCode::from(EXIT_USAGE),
            Failure::Verdict { exit, .. } => ExitCode::from(*exit),
            _ => ExitCode::from(EXIT_FAILURE),
        }
    }

    /// The line printed to stderr: `error: <code>: <message> (request <id>)` for API
    /// errors, with the cause chain appended for transport errors; nothing for a verdict
    /// without a message (a denied `policies test`: the exit code says it all).
    pub fn message(&self) -> Option<String> {
        let line = match self {
            Failure::Client(err) => with_causes(err),
            Failure::Usage(msg) | Failure::Local(msg) => msg.clone(),
            Failure::Unhealthy { status, .. } => format!("the server reports status {status}"),
            Failure::Verdict { message, .. } => message.clone()?,
        };
        Some(format!("error: {line}"))
    }

    /// What goes to stdout even though the command failed.
    pub fn report(&self) -> Option<&str> {
        match self {
            Failure::Unhealthy { report, .. } | Failure::Verdict { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// `outer: cause: root cause`, skipping causes that repeat the previous message.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut last = text.clone();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !last.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        last = message;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaivault_api::ErrorCode;

    #[test]
    fn api_errors_follow_the_documented_line() {
        let failure = Failure::Client(scaivault_client::Error::Api {
            status: 404,
            code: ErrorCode::SecretNotFound,
            message: "no secret at app/db".to_owned(),
            request_id: Some("req_01".to_owned()),
            retry_after: None,
        });
        assert_eq!(
            failure.message().as_deref(),
            Some("error: secret_not_found: no secret at app/db (request req_01)")
        );
        assert_eq!(failure.exit_code(), ExitCode::from(1));
    }

    #[test]
    fn verdicts_keep_their_report_and_exit_code() {
        let denied = Failure::Verdict {
            report: "allowed  no\n".into(),
            message: None,
            exit: EXIT_DENIED,
        };
        assert_eq!(denied.exit_code(), ExitCode::from(3));
        assert_eq!(denied.message(), None);
        assert_eq!(denied.report(), Some("allowed  no\n"));
        let broken = Failure::Verdict {
            report: String::new(),
            message: Some("the audit chain is broken".into()),
            exit: EXIT_FAILURE,
        };
        assert_eq!(
            broken.message().as_deref(),
            Some("error: the audit chain is broken")
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(Failure::Usage("x".into()).exit_code(), ExitCode::from(2));
    }

    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);
    impl std::fmt::Display for Chain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn causes_are_joined_without_repeats() {
        let err = Chain(
            "cannot reach the server",
            Some(Box::new(Chain(
                "connect error",
                Some(Box::new(Chain(
                    "connect error",
                    Some(Box::new(Chain("refused", None))),
                ))),
            ))),
        );
        assert_eq!(
            with_causes(&err),
            "cannot reach the server: connect error: refused"
        );
    }
}
