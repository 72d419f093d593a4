//! A nats-server with JetStream of a test's own: a free loopback port, its store and log in a
//! temp dir, killed on drop. `stop`, `restart` (same port and store), `freeze` and `thaw`
//! play outages. The binary is `LB_TEST_NATS_BIN` (exported by `scripts/test`), else
//! `nats-server` on PATH or in /usr/sbin; without one the test is skipped, unless
//! `LB_REQUIRE_ENGINES` is set.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) throw-away nats-server.
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn find_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("LB_TEST_NATS_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl NatsServer {
    /// Starts a server, or returns `None` (the test skips) when there is no nats-server and
    /// `LB_REQUIRE_ENGINES` is not set.
    pub fn start() -> Option<NatsServer> {
        let Some(bin) = find_binary() else {
            assert!(
                std::env::var("LB_REQUIRE_ENGINES").is_err(),
                "nats-server not found (LB_TEST_NATS_BIN unset, not on PATH) but \
                 LB_REQUIRE_ENGINES is set: install nats-server or run scripts/test"
            );
            eprintln!("skipping: nats-server not found (install nats-server or run scripts/test)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = NatsServer {
            bin,
            port: 0,
            dir,
            child: None,
        };
        // A free port can be taken before the server binds it: try a few.
        for _ in 0..3 {
            server.port = free_port();
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("nats-server did not start:\n{}", server.log_tail());
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL, like a crash); its store stays for [`NatsServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        // The port may linger for a moment after the kill.
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not restart on port {}:\n{}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("server running");
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} failed");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Spawns the server and waits until it is ready; `false` when it exited (port taken).
    fn spawn(&mut self) -> bool {
        let log_path = self.log_path();
        let offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open nats log");
        let store = self.dir.path().join("js");
        let mut child = Command::new(&self.bin)
            .arg("-js")
            .arg("-sd")
            .arg(&store)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready_since(&log_path, offset) {
                self.child = Some(child);
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nats-server not ready within {READY_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether the log says "Server is ready" after `offset`.
fn ready_since(log: &Path, offset: u64) -> bool {
    std::fs::read(log)
        .ok()
        .and_then(|bytes| {
            bytes
                .get(usize::try_from(offset).ok()?..)
                .map(<[u8]>::to_vec)
        })
        .is_some_and(|tail| String::from_utf8_lossy(&tail).contains("Server is ready"))
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // SIGKILL ends a frozen server too.
        self.stop();
    }
}
