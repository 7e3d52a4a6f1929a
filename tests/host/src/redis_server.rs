//! [`RedisServer`]: a throwaway `redis-server` on a free loopback port, for
//! tests of the Redis backend of [`KeyValueStore`](crate::KeyValueStore).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How long [`RedisServer::start`] waits for the server to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process (`--bind 127.0.0.1 --save "" --appendonly no`,
/// in a temporary directory), killed when dropped.
///
/// ```no_run
/// use bridge_host::{KeyValueStore, RedisServer};
///
/// if !RedisServer::available() {
///     eprintln!("skipped: redis-server is not installed");
///     return;
/// }
/// let server = RedisServer::start().unwrap();
/// let store = KeyValueStore::redis(&server.url()).unwrap();
/// store.set("k", "v");
/// ```
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// The `redis-server` executable on `PATH`, if any.
    pub fn executable() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    }

    /// Whether `redis-server` is on `PATH` (tests skip with a message when
    /// it is not).
    pub fn available() -> bool {
        Self::executable().is_some()
    }

    /// Start a server on a free loopback port and wait until it answers
    /// `PING`.
    pub fn start() -> anyhow::Result<Self> {
        let exe = Self::executable().context("redis-server is not on PATH")?;
        // The port is free when probed; another process may take it before
        // the server binds, so retry a few times.
        let mut last_error = None;
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("bridge-host-redis-")
                .tempdir()
                .context("temporary directory for redis-server")?;
            let port = free_port()?;
            let child = Command::new(&exe)
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot run {}", exe.display()))?;
            // From here on, dropping `server` kills the process.
            let mut server = RedisServer {
                child,
                port,
                _dir: dir,
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap())
    }

    /// Wait until the server answers `PING`, or fail if it exits or
    /// [`START_TIMEOUT`] passes.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let client = redis::Client::open(self.url())?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("redis-server on port {} exited: {status}", self.port);
            }
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `SIGSTOP`: the server keeps its connections and answers nothing (a hung server).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// `SIGCONT` after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {}", self.child.id());
    }

    /// Kills the server (`SIGKILL`): connections are refused until
    /// [`restart`](Self::restart).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts a fresh, empty server on the same port (its data is gone, as after a crash
    /// of a server without persistence).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let exe = Self::executable().context("redis-server is not on PATH")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.child = Command::new(&exe)
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .arg("--dir")
                .arg(self._dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot run {}", exe.display()))?;
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                // The port may linger for a moment after the kill.
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}
