//! Test certificates minted in-process by rcgen (ECDSA P-256): a CA no platform trusts
//! and leaf certificates it signs, so TLS tests need no `openssl` binary.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A self-signed CA.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its private key, both PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(common_name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .expect("leaf params")
            .signed_by(&key, &self.issuer)
            .expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A fresh CA and a `localhost`/`127.0.0.1` server certificate in `dir`:
/// `<name>-ca.pem`, `<name>.pem` and `<name>.key`.
pub fn write_server_cert(dir: &Path, name: &str) {
    let ca = Ca::new(&format!("{name}-ca"));
    let leaf = ca.leaf(&["localhost", "127.0.0.1"]);
    for (file, text) in [
        (format!("{name}-ca.pem"), ca.pem()),
        (format!("{name}.pem"), leaf.cert_pem),
        (format!("{name}.key"), leaf.key_pem),
    ] {
        std::fs::write(dir.join(&file), text).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
}

/// A reqwest client that trusts only the CA in `ca_pem` (not the platform's roots).
pub fn client_trusting(ca_pem: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca_pem).unwrap_or_else(|e| panic!("read {}: {e}", ca_pem.display()));
    let ca = reqwest::Certificate::from_pem(&pem).expect("CA certificate");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("TLS client")
}
