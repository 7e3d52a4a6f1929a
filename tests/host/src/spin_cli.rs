//! A real Spin: [`spin_cli`] finds the `spin` binary, [`SpinUp`] runs `spin up` on the
//! repository's local manifest against a given Kraken (the simulator), and
//! [`http_request`] talks to it with a time limit.
//!
//! Spin is on no package registry, so a clone may lack it: tests that need it call
//! [`spin_cli`] and skip with a message when it returns `None`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `spin` binary: on `PATH`, or the copy beside the repository
/// (`../shared/tools/spin/spin`) when there is one.
pub fn spin_cli() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("spin"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let beside = crate::workspace_root().join("../shared/tools/spin/spin");
        beside.is_file().then_some(beside)
    })
}

/// [`spin_cli`] for a Spin-gated test: `None` (the test skips, saying so) when there is
/// no Spin, unless `BRIDGE_REQUIRE_SPIN` is set (the test command sets it when it found
/// one): then a missing Spin fails the test.
pub fn spin_or_skip(test: &str) -> Option<PathBuf> {
    let spin = spin_cli();
    if spin.is_none() {
        assert!(
            std::env::var_os("BRIDGE_REQUIRE_SPIN").is_none(),
            "{test}: BRIDGE_REQUIRE_SPIN is set but no `spin` is on PATH nor beside the repository"
        );
        eprintln!("skipped {test}: no `spin` on PATH nor beside the repository");
    }
    spin
}

/// A `spin up` of `spin.local.toml` (the bridge and its store component), allowed to
/// reach only `kraken_url`, serving on a free loopback port in a directory of its own
/// (its `.spin/` holds the SQLite store). Killed, with its process group, when dropped.
pub struct SpinUp {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its working directory (the default store is `.spin/sqlite_key_value.db` in it).
    pub dir: tempfile::TempDir,
    output: Arc<Mutex<String>>,
}

impl SpinUp {
    /// Starts `spin up` with `settings` as Spin variables and, when given, a runtime
    /// configuration file's text; waits until it accepts connections.
    pub fn start(
        spin: &Path,
        kraken_url: &str,
        settings: &[(String, String)],
        runtime_config: Option<&str>,
    ) -> anyhow::Result<SpinUp> {
        let root = crate::workspace_root();
        let dir = tempfile::Builder::new().prefix("spin-up-").tempdir()?;
        let manifest = std::fs::read_to_string(root.join("spin.local.toml"))?
            .replace("http://127.0.0.1:18081", kraken_url)
            .replace(
                "source = \"target/wasm/bridge-spin.wasm\"",
                &format!(
                    "source = \"{}\"",
                    crate::wasm_path(crate::Flavour::Spin).display()
                ),
            );
        // No build section in a copied manifest: `spin up` does not build.
        std::fs::write(dir.path().join("spin.toml"), manifest)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(spin);
        cmd.args(["up", "-f", "spin.toml", "--listen", &addr.to_string()])
            .current_dir(dir.path());
        if let Some(text) = runtime_config {
            std::fs::write(dir.path().join("runtime-config.toml"), text)?;
            cmd.args(["--runtime-config-file", "runtime-config.toml"]);
        }
        for (name, value) in settings {
            cmd.env(
                format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
                value,
            );
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let mut up = SpinUp {
            child,
            addr,
            dir,
            output,
        };
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = up.child.try_wait()? {
                anyhow::bail!("spin up exited ({status}):\n{}", up.output());
            }
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("spin up did not listen within 60 s:\n{}", up.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(up)
    }

    /// What Spin printed, and the components' logs (`.spin/logs/`).
    pub fn output(&self) -> String {
        let mut text = self.output.lock().unwrap().clone();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join(".spin/logs")) {
            for entry in entries.flatten() {
                let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
                text.push_str(&format!("\n--- {} ---\n{body}", entry.path().display()));
            }
        }
        text
    }

    /// The path of the default (SQLite) store.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join(".spin/sqlite_key_value.db")
    }
}

impl Drop for SpinUp {
    fn drop(&mut self) {
        // The whole process group: `spin up` runs `spin trigger http` as a child.
        let _ = Command::new("kill")
            .args(["-KILL", "--"])
            .arg(format!("-{}", self.child.id()))
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `connection: close`: status, body and how long the answer
/// took. A request with no complete answer within `limit` is `None`.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    limit: Duration,
) -> Option<(u16, String, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(limit)).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let elapsed = started.elapsed();
    let raw = String::from_utf8(raw).ok()?;
    let (head, rest) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n")?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            out.push_str(after.get(..size)?);
            rest = after.get(size + 2..)?;
        }
        out
    } else {
        rest.to_string()
    };
    Some((status, body, elapsed))
}
