//! A real S3-compatible server (moto) on loopback for tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `moto_server` child process, killed on drop.
pub struct Moto {
    child: Child,
    log: tempfile::NamedTempFile,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `moto_server` ({e}); it is needed for this test: \
                     run scripts/install-deps.sh (installs moto[server] with pip)"
                )
            });
        let mut moto = Moto {
            child,
            log,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        moto.wait_ready(SocketAddr::from(([127, 0, 0, 1], port)));
        moto
    }

    fn wait_ready(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("moto_server exited early ({status}):\n{}", self.log_text());
            }
            // Ready once it answers an HTTP request, not merely accepts a connection.
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                use std::io::Write as _;
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let request =
                    "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                let mut head = [0u8; 12];
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_exact(&mut head).is_ok()
                    && head.starts_with(b"HTTP/1.")
                {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "moto_server did not answer within 60s:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
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
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "create bucket {bucket}: {}",
            response.status()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
