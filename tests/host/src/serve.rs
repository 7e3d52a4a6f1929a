//! [`ServeHost`]: the portable flavour under the real `wasmtime serve -Scli`
//! (wasmtime-cli 48).
//!
//! Settings reach the guest as environment variables: the child process gets
//! them in its own environment and the command line only names them
//! (`--env NAME`), so secret values never appear in `ps` output. The CLI
//! binds `127.0.0.1:0`; the port it picked is read from its
//! `Serving HTTP on http://…/` line, then a TCP connect confirms it is up.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::io::TokioIo;

use crate::exchange::Exchange;

const INSTALL_HINT: &str = "install with: cargo install wasmtime-cli --version 48.0.8 --locked";

/// Find the `wasmtime` CLI: `$WASMTIME`, then `PATH`, then `$CARGO_HOME/bin`,
/// then `$HOME/.cargo/bin`.
pub fn find_wasmtime_cli() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WASMTIME") {
        return Some(PathBuf::from(path));
    }
    let exe = format!("wasmtime{}", std::env::consts::EXE_SUFFIX);
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_dirs = [
        std::env::var_os("CARGO_HOME").map(|h| PathBuf::from(h).join("bin")),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")),
    ];
    path_dirs
        .into_iter()
        .chain(cargo_dirs.into_iter().flatten())
        .map(|dir| dir.join(&exe))
        .find(|candidate| candidate.is_file())
}

/// The `wasmtime` CLI (see [`find_wasmtime_cli`]).
///
/// # Panics
///
/// If it is not installed, with the install command.
pub fn wasmtime_cli() -> PathBuf {
    let path = find_wasmtime_cli().unwrap_or_else(|| {
        panic!("wasmtime CLI not found ($WASMTIME, PATH, cargo bin); {INSTALL_HINT}")
    });
    assert!(
        path.is_file(),
        "wasmtime CLI {} does not exist; {INSTALL_HINT}",
        path.display()
    );
    path
}

/// Builder for [`ServeHost`].
#[derive(Debug, Clone)]
pub struct ServeHostBuilder {
    wasm: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    startup_timeout: Duration,
    request_timeout: Duration,
}

impl ServeHostBuilder {
    /// Environment variable for the guest (passed as `--env NAME`, value via
    /// the child's environment).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Several environment variables for the guest.
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Extra `wasmtime serve` flag, placed before the component path
    /// (e.g. `-Sinherit-network`). `-Scli` and `--addr` are always passed.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// How long to wait for the server to listen. Default 60 s.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Per-request limit; exceeding it panics with the logs. Default 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Spawn the CLI and wait until it accepts connections.
    pub fn try_start(self) -> anyhow::Result<ServeHost> {
        ServeHost::spawn(self)
    }

    /// [`try_start`](Self::try_start), panicking on error (the message
    /// includes the CLI's output).
    pub fn start(self) -> ServeHost {
        let wasm = self.wasm.clone();
        self.try_start()
            .unwrap_or_else(|e| panic!("wasmtime serve {}: {e:?}", wasm.display()))
    }
}

/// Shared, growing capture of one child output stream.
type Capture = Arc<Mutex<Vec<u8>>>;

/// A running `wasmtime serve -Scli` child process; killed on drop.
pub struct ServeHost {
    child: Child,
    command_line: String,
    addr: SocketAddr,
    stdout: Capture,
    stderr: Capture,
    readers: Vec<JoinHandle<()>>,
    request_timeout: Duration,
}

impl std::fmt::Debug for ServeHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeHost")
            .field("pid", &self.child.id())
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn spawn_reader(mut pipe: impl Read + Send + 'static, capture: Capture) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => capture.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

fn lossy(capture: &Capture) -> String {
    String::from_utf8_lossy(&capture.lock().unwrap()).into_owned()
}

/// Address from the CLI's `Serving HTTP on http://127.0.0.1:PORT/` line.
fn serving_addr(stderr: &str) -> Option<SocketAddr> {
    let rest = stderr.split("Serving HTTP on http://").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

impl ServeHost {
    /// Start configuring a server for the component at `wasm`.
    pub fn builder(wasm: impl Into<PathBuf>) -> ServeHostBuilder {
        ServeHostBuilder {
            wasm: wasm.into(),
            env: Vec::new(),
            args: Vec::new(),
            startup_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Shorthand: start `wasm` with the given guest environment variables.
    pub fn start<K: Into<String>, V: Into<String>>(
        wasm: impl Into<PathBuf>,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> ServeHost {
        Self::builder(wasm).envs(env).start()
    }

    fn spawn(config: ServeHostBuilder) -> anyhow::Result<ServeHost> {
        let wasm: &Path = &config.wasm;
        if !wasm.is_file() {
            bail!(
                "component {} not found: run scripts/build.sh first",
                wasm.display()
            );
        }
        let cli = wasmtime_cli();
        let mut cmd = Command::new(&cli);
        cmd.arg("serve")
            .arg("-Scli")
            .arg("--addr")
            .arg("127.0.0.1:0");
        for (name, value) in &config.env {
            cmd.arg("--env").arg(name);
            cmd.env(name, value);
        }
        cmd.args(&config.args)
            .arg(wasm)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command_line = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", cli.display()))?;
        let stdout = Capture::default();
        let stderr = Capture::default();
        let readers = vec![
            spawn_reader(child.stdout.take().expect("piped stdout"), stdout.clone()),
            spawn_reader(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        // From here on `host` owns the child, so errors kill it on drop.
        let mut host = ServeHost {
            child,
            command_line,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout,
            stderr,
            readers,
            request_timeout: config.request_timeout,
        };
        let deadline = Instant::now() + config.startup_timeout;
        let addr = loop {
            if let Some(addr) = serving_addr(&lossy(&host.stderr)) {
                break addr;
            }
            if let Some(status) = host.child.try_wait()? {
                // Let the readers drain the pipes before reporting.
                for reader in host.readers.drain(..) {
                    let _ = reader.join();
                }
                bail!(
                    "wasmtime serve exited with {status} before listening\n{}",
                    host.logs()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "wasmtime serve did not listen within {:?}\n{}",
                    config.startup_timeout,
                    host.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        host.addr = addr;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(host);
            }
            if Instant::now() > deadline {
                bail!(
                    "wasmtime serve does not accept connections on {addr}\n{}",
                    host.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The command line the CLI was started with (no setting values: those
    /// travel in the child's environment).
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Process id of the CLI.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the CLI wrote to stdout so far (guest lines are prefixed
    /// `stdout [N] :: `).
    pub fn stdout(&self) -> String {
        lossy(&self.stdout)
    }

    /// Everything the CLI wrote to stderr so far.
    pub fn stderr(&self) -> String {
        lossy(&self.stderr)
    }

    /// Both streams, labelled.
    pub fn logs(&self) -> String {
        format!(
            "--- wasmtime serve stdout ---\n{}\n--- wasmtime serve stderr ---\n{}",
            self.stdout().trim_end(),
            self.stderr().trim_end()
        )
    }

    /// Send `req` over a fresh HTTP/1.1 loopback connection. A relative URI
    /// (`/webhook`) is resolved against [`base_url`](Self::base_url).
    pub async fn request(&self, req: http::Request<Bytes>) -> Exchange {
        let out_before = self.stdout.lock().unwrap().len();
        let err_before = self.stderr.lock().unwrap().len();
        let started = Instant::now();
        let result = tokio::time::timeout(self.request_timeout, self.send(req)).await;
        let elapsed = started.elapsed();
        let response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => panic!("request to wasmtime serve failed: {e:?}\n{}", self.logs()),
            Err(_) => panic!(
                "request to wasmtime serve did not complete within {:?}\n{}",
                self.request_timeout,
                self.logs()
            ),
        };
        // Give the pipe readers a moment to catch up with the guest's output.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let slice = |capture: &Capture, from: usize| {
            let data = capture.lock().unwrap();
            String::from_utf8_lossy(&data[from.min(data.len())..]).into_owned()
        };
        let (parts, body) = response.into_parts();
        Exchange {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            stdout: slice(&self.stdout, out_before),
            stderr: slice(&self.stderr, err_before),
            elapsed,
            instance_ended: None,
            outbound: Vec::new(),
            error: None,
        }
    }

    /// [`request`](Self::request) on the crate's shared runtime, for plain
    /// `#[test]`s. Must not be called from inside an async runtime.
    pub fn request_blocking(&self, req: http::Request<Bytes>) -> Exchange {
        crate::runtime().block_on(self.request(req))
    }

    async fn send(&self, req: http::Request<Bytes>) -> anyhow::Result<http::Response<Bytes>> {
        let (mut parts, body) = req.into_parts();
        if parts.uri.authority().is_none() {
            let pq = parts
                .uri
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("/");
            parts.uri = format!("{}{pq}", self.base_url()).parse()?;
        }
        if !parts.headers.contains_key(http::header::HOST) {
            let authority = parts
                .uri
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default();
            parts
                .headers
                .insert(http::header::HOST, http::HeaderValue::from_str(&authority)?);
        }
        // HTTP/1.1 origin-form on the wire.
        let target = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        let connect_to = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .context("request URI has no authority")?;
        parts.uri = target.parse()?;
        let stream = tokio::net::TcpStream::connect(&connect_to)
            .await
            .with_context(|| format!("connecting to {connect_to}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let response = sender
            .send_request(http::Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        drop(sender);
        let _ = driver.await;
        Ok(http::Response::from_parts(parts, body))
    }

    /// Whether the child process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServeHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}
