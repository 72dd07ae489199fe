//! moto (`moto_server`), an S3-compatible API on loopback, for the audit export's S3
//! tests. `scripts/install-deps.sh` installs it (`pip install 'moto[server]'`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::process::Process;

/// A `moto_server` child process, killed on drop.
pub struct Moto {
    process: Process,
    _dir: tempfile::TempDir,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = crate::names::free_port();
        let dir = tempfile::Builder::new()
            .prefix("scaivault-moto-")
            .tempdir()
            .expect("create a temp dir");
        let on_path = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("moto_server").is_file())
        });
        if !on_path {
            panic!(
                "cannot start `moto_server`; it is needed for this test: \
                 run scripts/install-deps.sh (installs moto[server] with pip)"
            );
        }
        let mut process = Process::spawn(
            "moto_server",
            Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]),
            &dir.path().join("moto.log"),
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        crate::wait::wait_for_blocking("moto_server to answer", Duration::from_secs(60), || {
            if let Some(status) = process.try_wait() {
                panic!("moto_server exited early ({status}):\n{}", process.tail());
            }
            answers_http(addr).then_some(())
        });
        Moto {
            process,
            _dir: dir,
            endpoint: format!("http://{addr}"),
        }
    }

    /// Creates a bucket (moto takes unsigned requests; the vault itself never creates one).
    pub async fn create_bucket(&self, bucket: &str, region: &str) {
        let body = if region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint>\
                 </CreateBucketConfiguration>"
            )
        };
        let req = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .body(body);
        crate::http::send_ok(req, &format!("create bucket {bucket}")).await;
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

/// Ready once it answers an HTTP request, not merely accepts a connection.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut head = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.")
}
