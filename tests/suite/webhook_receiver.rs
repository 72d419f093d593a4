//! The Python Standard Webhooks receiver (`tests/receiver/webhook_receiver.py`) as a test
//! fixture: it verifies every request with the `standardwebhooks` package, answers what it is
//! told, and logs what it received. Started on a free loopback port, stopped and restarted on
//! the same port, killed on drop. Needs `LB_TEST_PYTHON` (a venv from `lb_python_env`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use super::engines::repo;

/// One request as the receiver logged it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Received {
    /// The `webhook-id` header.
    pub webhook_id: Option<String>,
    /// `standardwebhooks` accepted the signature and timestamp.
    pub verified: bool,
    /// What the receiver answered.
    pub status: u16,
    /// CloudEvents attributes of the body (when verified).
    pub subject: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub sequence: Option<String>,
    pub id: Option<String>,
    /// Unix seconds.
    pub received_at: f64,
}

/// A running (or stopped) receiver.
pub struct Receiver {
    python: String,
    secret: String,
    port: u16,
    dir: tempfile::TempDir,
    /// The process and its stdout, kept open so it never writes into a closed pipe.
    process: Option<(Child, ChildStdout)>,
}

impl Receiver {
    /// Starts a receiver checking signatures with `secret`; `None` (the test skips) when
    /// `LB_TEST_PYTHON` is not set, a failure when `LB_REQUIRE_ENGINES` is.
    pub fn start(secret: &str) -> Option<Receiver> {
        let Ok(python) = std::env::var("LB_TEST_PYTHON") else {
            assert!(
                std::env::var("LB_REQUIRE_ENGINES").is_err(),
                "LB_TEST_PYTHON is not set but LB_REQUIRE_ENGINES is: scripts/test must set up \
                 the Python venv (lb_python_env)"
            );
            eprintln!(
                "skipping: LB_TEST_PYTHON not set (run scripts/test, or `source \
                 scripts/lib/engines.sh && lb_python_env`)"
            );
            return None;
        };
        let mut receiver = Receiver {
            python,
            secret: secret.to_owned(),
            port: 0,
            dir: tempfile::tempdir().expect("tempdir"),
            process: None,
        };
        receiver.spawn();
        Some(receiver)
    }

    /// The URL to POST events to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Answers `status` (with `Retry-After: retry_after` when given) to the next `count`
    /// requests, or to all when `count` is `None`; `set_status(200, None, None)` resets.
    pub fn set_status(&self, status: u16, count: Option<u32>, retry_after: Option<&str>) {
        self.control(serde_json::json!({
            "status": status, "count": count, "retry_after": retry_after,
        }));
    }

    /// Sends a `/control` body as is (for `delay_ms`).
    pub fn control(&self, body: serde_json::Value) {
        let body = body.to_string();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("receiver control");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "POST /control HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .expect("send control");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("control answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "control: {answer}");
    }

    /// Every request logged so far, across restarts, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        let Ok(text) = std::fs::read_to_string(self.log()) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// Kills the receiver: connections to its port are refused until [`Receiver::restart`].
    pub fn stop(&mut self) {
        if let Some((mut child, _)) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the receiver again on the same port, in its default mode (answers 200).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("received.jsonl")
    }

    /// Starts the process on `self.port` (0: a free one) and reads the port it bound. A
    /// restart retries a while: the old socket may linger for a moment.
    fn spawn(&mut self) {
        let script = repo().join("tests/receiver/webhook_receiver.py");
        let stderr_path = self.dir.path().join("stderr.txt");
        for _ in 0..50 {
            let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
            let mut child = Command::new(&self.python)
                .arg(&script)
                .args(["--port", &self.port.to_string(), "--secret", &self.secret])
                .arg("--log")
                .arg(self.log())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {} (LB_TEST_PYTHON): {e}", self.python));
            let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
            let mut line = String::new();
            stdout.read_line(&mut line).expect("receiver stdout");
            if let Some(port) = line.trim().strip_prefix("PORT ") {
                self.port = port.parse().expect("port number");
                self.process = Some((child, stdout.into_inner()));
                return;
            }
            // Exited before listening: retry only a busy port of a restart.
            let _ = child.wait();
            let errors = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            assert!(
                self.port != 0 && errors.contains("Address already in use"),
                "the webhook receiver did not start:\n{errors}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "port {} stayed busy: cannot restart the receiver",
            self.port
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
