//! The webhook's serving certificate, replaced without a restart: rustls asks
//! [`CertResolver`] for the certificate at every handshake, and the resolver answers with
//! whatever its [`ArcSwap`] holds now.
//!
//! Two sources fill it:
//! - **files** ([`watch_files`]): a certificate and key mounted from a Secret (cert-manager,
//!   or any rotation), reloaded when their modification times change; a broken new pair is
//!   logged and the previous one keeps serving;
//! - **self-managed** ([`SelfManaged`]): an in-memory CA made at start and a serving
//!   certificate for the Service's DNS names (and any IP SANs), renewed by the same CA
//!   before it expires; the CA goes into the webhook configuration's `caBundle`
//!   (`crate::ca_bundle`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: String },
    #[error("{what}: {source}")]
    Pem {
        what: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("certificate and key do not form a usable pair: {0}")]
    Key(#[source] rustls::Error),
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error("self-managed certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("--self-signed-service must be <service>.<namespace>, got {0:?}")]
    ServiceName(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate chain and its key from PEM; the key must match the first certificate.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<CertifiedKey> {
    let pem = |source| Error::Pem {
        what: what.to_owned(),
        source,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(pem)?;
    if chain.is_empty() {
        return Err(Error::NoCertificate {
            what: what.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(pem)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(Error::Key)
}

/// Answers every handshake with the current certificate.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(key: CertifiedKey) -> Arc<CertResolver> {
        Arc::new(CertResolver {
            current: ArcSwap::from_pointee(key),
        })
    }

    /// Serve `key` from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// The DER of the certificate served now.
    pub fn current_der(&self) -> Vec<u8> {
        self.current
            .load()
            .cert
            .first()
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// TLS 1.2 and 1.3 on aws-lc-rs, HTTP/2 and HTTP/1.1, certificates from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Mounted certificate files.
#[derive(Clone, Debug)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed `cert`, published as the webhook's `caBundle` when set.
    pub ca: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Files {
    pub fn load(&self) -> Result<CertifiedKey> {
        certified_key(
            &read(&self.cert)?,
            &read(&self.key)?,
            &self.cert.display().to_string(),
        )
    }

    pub fn load_ca(&self) -> Result<Option<Vec<u8>>> {
        self.ca.as_deref().map(read).transpose()
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// Polls the files' modification times every `interval`; on a change loads the new pair
/// into `resolver` (and the CA into `ca`), or logs why not and keeps the old one.
pub fn watch_files(
    files: Files,
    resolver: Arc<CertResolver>,
    ca: watch::Sender<Option<Vec<u8>>>,
    interval: Duration,
) {
    tokio::spawn(async move {
        let mut seen = files.stamps();
        loop {
            tokio::time::sleep(interval).await;
            let now = files.stamps();
            if now == seen {
                continue;
            }
            match files.load() {
                Ok(key) => {
                    resolver.replace(key);
                    seen = now;
                    tracing::info!(cert = %files.cert.display(), "serving certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate files changed but cannot be loaded; serving the previous certificate");
                    continue;
                }
            }
            match files.load_ca() {
                Ok(bundle) => {
                    ca.send_if_modified(|old| {
                        let changed = *old != bundle;
                        *old = bundle;
                        changed
                    });
                }
                Err(e) => tracing::error!(error = %e, "CA file unreadable; caBundle unchanged"),
            }
        }
    });
}

/// A CA kept in memory and the serving certificates it signs.
pub struct SelfManaged {
    ca: CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
}

/// Lifetime of a self-managed serving certificate; it is renewed after two thirds.
pub const SELF_MANAGED_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that are a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + lifetime;
}

impl SelfManaged {
    /// A fresh CA for `<service>.<namespace>`; the serving certificate names
    /// `<service>`, `<service>.<namespace>`, `<service>.<namespace>.svc` and
    /// `<service>.<namespace>.svc.cluster.local`, plus `ips`.
    pub fn new(service: &str, ips: &[IpAddr]) -> Result<SelfManaged> {
        let (svc, ns) = service
            .split_once('.')
            .filter(|(s, n)| !s.is_empty() && !n.is_empty() && !n.contains('.'))
            .ok_or_else(|| Error::ServiceName(service.to_owned()))?;
        let mut names = vec![
            svc.to_owned(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ];
        names.extend(ips.iter().map(IpAddr::to_string));
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(
            DnType::CommonName,
            format!("scaivault-injector CA for {service}"),
        );
        validity(&mut params, CA_VALIDITY);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(SelfManaged { ca, names })
    }

    /// The CA certificate (PEM): the webhook configuration's `caBundle`.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A new serving certificate.
    pub fn issue(&self) -> Result<CertifiedKey> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(self.names.clone())?;
        params
            .distinguished_name
            .push(DnType::CommonName, self.names[0].clone());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, SELF_MANAGED_VALIDITY);
        let cert = params.signed_by(&key, &self.ca)?;
        certified_key(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            "self-managed certificate",
        )
    }

    /// Renews the serving certificate in `resolver` every two thirds of its lifetime.
    pub fn keep_renewed(self, resolver: Arc<CertResolver>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SELF_MANAGED_VALIDITY * 2 / 3).await;
                match self.issue() {
                    Ok(key) => {
                        resolver.replace(key);
                        tracing::info!("self-managed serving certificate renewed");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "renewing the serving certificate failed")
                    }
                }
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn self_managed_certificates_name_the_service() {
        let sm = SelfManaged::new(
            "scaivault-injector.scaivault",
            &["127.0.0.1".parse().unwrap()],
        )
        .unwrap();
        assert!(sm.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let a = sm.issue().unwrap();
        let b = sm.issue().unwrap();
        assert_ne!(a.cert[0].as_ref(), b.cert[0].as_ref());
        let resolver = CertResolver::new(a);
        resolver.replace(b.clone());
        assert_eq!(resolver.current_der(), b.cert[0].as_ref());
        for bad in ["svc", ".ns", "svc.", "a.b.c"] {
            assert!(SelfManaged::new(bad, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn mismatched_or_broken_pairs_are_refused() {
        let sm = SelfManaged::new("svc.ns", &[]).unwrap();
        let other = KeyPair::generate().unwrap().serialize_pem();
        let cert = sm.ca_pem();
        assert!(matches!(
            certified_key(cert.as_bytes(), other.as_bytes(), "t"),
            Err(Error::Key(_))
        ));
        assert!(matches!(
            certified_key(b"", other.as_bytes(), "t"),
            Err(Error::NoCertificate { .. })
        ));
        assert!(certified_key(cert.as_bytes(), b"junk", "t").is_err());
    }
}
