//! TLS to the database: rustls on the workspace's aws-lc-rs provider. The URL's `sslmode`
//! decides whether it is used (`disable`, `prefer` — the default —, `require`); when it
//! is, the server's certificate is always verified, against the CA file given or the
//! system's roots, and its name checked against the URL's host.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{Result, StoreError};

#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM file of the CA(s) that sign the database's certificate; `None`: the system's.
    pub ca_file: Option<PathBuf>,
}

impl TlsSettings {
    pub(super) fn connector(&self) -> Result<MakeRustlsConnect> {
        let unavailable = |what: String| StoreError::Unavailable(what);
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| unavailable(format!("reading {}: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err(unavailable(format!(
                        "{} holds no PEM certificate",
                        path.display()
                    )));
                }
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                }
            }
            None => {
                // Unreadable entries of the system store are skipped, as every client does.
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| unavailable(format!("TLS settings: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}
