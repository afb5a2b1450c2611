//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// Serves `app` on 127.0.0.1 for the rest of the test.
pub async fn serve(app: Router) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

/// Serves `gzipped` (a gzip-compressed text-format page) at `/metrics` with
/// `Content-Encoding: gzip`, for the rest of the test.
pub async fn serve_gzipped_metrics(gzipped: Bytes) -> SocketAddr {
    serve(Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = gzipped.clone();
            async move {
                (
                    [
                        ("content-type", "text/plain; version=0.0.4"),
                        ("content-encoding", "gzip"),
                    ],
                    body,
                )
            }
        }),
    ))
    .await
}

/// The wall clock in Unix milliseconds (the agent's sample timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The value of the sample `series` (name and labels as written) on a
/// metrics page.
pub fn sample_value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Sets the file size limit (RLIMIT_FSIZE, soft) of process `pid` to
/// `bytes` (`None`: unlimited): past it every write fails with EFBIG —
/// for root too, unlike a read-only mode bit. The agent ignores SIGXFSZ,
/// so the writes fail rather than the process. Start such an agent with
/// [`AgentProcess::start_logging_through_a_pipe`]: its log file is
/// written by the agent too.
pub fn set_file_size_limit(pid: u32, bytes: Option<u64>) {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with valid pointers to rlimit structs.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            std::ptr::null(),
            &mut cur,
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: bytes.unwrap_or(cur.rlim_max),
        rlim_max: cur.rlim_max,
    };
    // SAFETY: as above.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// A first-party or test component built by `cargo xtask plugins`.
pub fn component(name: &str) -> PathBuf {
    let dir = std::env::var_os("WASMON_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let p = dir.join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: build the plugins first with `cargo xtask plugins` (or run the whole suite with `cargo xtask test`)",
        p.display()
    );
    p
}

/// A temp dir for an agent whose `plugins/` holds the components `names`.
pub fn agent_dir_with(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    for name in names {
        std::fs::copy(
            component(name),
            dir.path().join(format!("plugins/{name}.wasm")),
        )
        .unwrap();
    }
    dir
}

/// One request received by [`Receiver`].
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A local HTTP server on 127.0.0.1 that records every POST and answers with
/// a configurable status.
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub status: Arc<Mutex<StatusCode>>,
    /// How long to wait before answering.
    pub delay: Arc<Mutex<std::time::Duration>>,
    /// Requests that arrived, answered or not yet (`got` has them once
    /// answered, after `delay`).
    pub arrived: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(Mutex::new(StatusCode::OK));
        let delay = Arc::new(Mutex::new(std::time::Duration::ZERO));
        let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (g, s, d, a) = (got.clone(), status.clone(), delay.clone(), arrived.clone());
        let app = Router::new().fallback(post(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let (g, s, d) = (g.clone(), s.clone(), d.clone());
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let wait = *d.lock().unwrap();
                    tokio::time::sleep(wait).await;
                    g.lock().unwrap().push(Received {
                        path: uri.path().to_string(),
                        headers,
                        body,
                    });
                    let code = *s.lock().unwrap();
                    (code, "ok")
                }
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            addr,
            got,
            status,
            delay,
            arrived,
            shutdown: Some(tx),
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The real `wasmon` binary running on a config in a temp dir.
pub struct AgentProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl AgentProcess {
    /// A free port on 127.0.0.1 (bound then released; good enough for tests).
    pub fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    /// The agent binary: `WASMON_BIN` when set (a release build, or a copy
    /// that a long run keeps while the tree is rebuilt), else the one cargo
    /// built for this test.
    pub fn binary() -> PathBuf {
        std::env::var_os("WASMON_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wasmon")))
    }

    /// Starts `wasmon run --config DIR/wasmon.toml` where `config` is the
    /// text with `{{LISTEN}}` replaced, and waits until it is ready.
    pub async fn start(dir: tempfile::TempDir, config: &str) -> AgentProcess {
        let log = dir.path().join("wasmon.log");
        let stderr = std::process::Stdio::from(std::fs::File::create(&log).unwrap());
        Self::spawn(dir, config, stderr, None).await
    }

    /// [`AgentProcess::start`] with the agent's stderr read through a pipe
    /// into its log file, so that the log stays complete while the
    /// agent's own file writes are made to fail ([`set_file_size_limit`]).
    pub async fn start_logging_through_a_pipe(
        dir: tempfile::TempDir,
        config: &str,
    ) -> AgentProcess {
        let log = dir.path().join("wasmon.log");
        let file = std::fs::File::create(&log).unwrap();
        Self::spawn(dir, config, std::process::Stdio::piped(), Some(file)).await
    }

    async fn spawn(
        dir: tempfile::TempDir,
        config: &str,
        stderr: std::process::Stdio,
        copy_to: Option<std::fs::File>,
    ) -> AgentProcess {
        let addr = Self::free_addr();
        let cfg_path = dir.path().join("wasmon.toml");
        std::fs::write(&cfg_path, config.replace("{{LISTEN}}", &addr.to_string())).unwrap();
        let log = dir.path().join("wasmon.log");
        let mut child = std::process::Command::new(Self::binary())
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("WASMON_LOG", "info,wasmon=debug")
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(stderr)
            .spawn()
            .unwrap();
        if let Some(mut file) = copy_to {
            let mut pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || std::io::copy(&mut pipe, &mut file));
        }
        let mut p = AgentProcess {
            child,
            addr,
            dir,
            log,
        };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("wasmon exited early ({status}):\n{}", self.logs());
            }
            if let Ok(r) = client.get(self.url("/-/ready")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "wasmon not ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Polls `f` every 100 ms until it holds; after `limit` the test fails
    /// with the agent's log.
    pub async fn eventually<F, Fut>(&self, what: &str, limit: std::time::Duration, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = std::time::Instant::now();
        while !f().await {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("wasmon.toml")
    }

    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// SIGKILL (no shutdown path runs) and hand back the data directory.
    pub fn kill9(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.into_dir()
    }

    /// The agent's directory, for a restart on it (the agent is killed if
    /// it still runs).
    pub fn into_dir(mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Sends SIGTERM and waits for the agent to exit, successfully: it must
    /// within `limit`. Returns how long it took.
    pub fn terminate_within(&mut self, limit: std::time::Duration) -> std::time::Duration {
        self.signal("TERM");
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}\n{}", self.logs());
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "no exit {limit:?} after SIGTERM\n{}",
                self.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The agent's /metrics page.
    pub async fn self_metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
