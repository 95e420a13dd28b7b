//! A tiny harness for end-to-end tests of the real `keel` binary: a temporary data
//! directory with a `keel.toml`, commands run as child processes, and an external tool
//! server that records every idempotency key it sees.

#![allow(dead_code)]

pub mod http;
pub mod load;
pub mod mcp;
pub mod postgres;
pub mod python;
pub mod schema;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

pub struct KeelHome {
    pub dir: tempfile::TempDir,
    /// The model cache keel is given (`KEEL_MODEL_CACHE`): by default one of this home's own,
    /// never the user's; `test_model_cache()` to find the model the tests already fetched.
    pub model_cache: PathBuf,
}

impl KeelHome {
    pub fn new(config: &str) -> KeelHome {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("keel.toml"), config).expect("write keel.toml");
        let model_cache = dir.path().join("model-cache");
        KeelHome { dir, model_cache }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("keel-data")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
        cmd.args(args);
        self.isolate(&mut cmd);
        cmd
    }

    /// Runs `cmd` in this home, with none of the caller's settings that would change what
    /// keel does, and this home's model cache.
    pub fn isolate(&self, cmd: &mut Command) {
        cmd.current_dir(self.path())
            .env_remove("KEEL_DATA_DIR")
            .env_remove("KEEL_FAULT_PAUSE")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("KEEL_MODEL")
            .env_remove("KEEL_LOG")
            .env("KEEL_MODEL_CACHE", &self.model_cache)
            .stdin(Stdio::null());
    }

    /// Runs keel to completion (bounded by `timeout`) and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keel");
        wait_with_timeout(child, Duration::from_secs(60))
    }

    /// Runs keel with `input` on its stdin; its stdout and stderr, after checking it succeeded.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> (String, String) {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keel");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = wait_with_timeout(child, Duration::from_secs(60));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "keel {args:?} failed: {stderr}");
        (stdout, stderr)
    }

    /// Runs keel with its stdout and stderr on one pseudo-terminal, as a person at a terminal
    /// sees it; returns what the terminal showed, line ends as `\n`.
    pub fn run_on_a_terminal(&self, args: &[&str]) -> String {
        self.run_on_a_terminal_typing(args, "", &[])
    }

    /// `run_on_a_terminal` with standard input on the terminal too (when `lines` is not empty):
    /// each line is typed, then Enter, once the terminal has shown `prompt` once more.
    pub fn run_on_a_terminal_typing(&self, args: &[&str], prompt: &str, lines: &[&str]) -> String {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors it opened into the given ints.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are open and owned here alone.
        let (mut master, slave) = unsafe {
            (
                std::fs::File::from_raw_fd(master),
                std::fs::File::from_raw_fd(slave),
            )
        };
        let mut command = self.command(args);
        if !lines.is_empty() {
            command.stdin(slave.try_clone().unwrap());
        }
        let child = command
            .stdout(slave.try_clone().unwrap())
            .stderr(slave)
            .spawn()
            .expect("spawn keel");
        drop(command);
        let mut keys = master.try_clone().unwrap();
        // Reads until the terminal's other side is closed for good: keel has exited.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut shown = Vec::new();
        let mut typed = 0;
        loop {
            let prompts = String::from_utf8_lossy(&shown).matches(prompt).count();
            if typed < lines.len() && prompts > typed {
                keys.write_all(format!("{}\r", lines[typed]).as_bytes())
                    .unwrap();
                typed += 1;
                continue;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => shown.extend_from_slice(&chunk),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                    "keel {args:?} on a terminal: nothing more within 60s; shown: {:?}",
                    String::from_utf8_lossy(&shown)
                ),
            }
        }
        let out = wait_with_timeout(child, Duration::from_secs(60));
        let shown = String::from_utf8_lossy(&shown).replace("\r\n", "\n");
        assert!(out.status.success(), "keel {args:?} failed: {shown}");
        shown
    }

    /// Runs keel and parses its stdout as JSON, failing with its stderr when it fails.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "keel {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "keel {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The events of a session, one JSON object each.
    pub fn events(&self, session: &str) -> Vec<Value> {
        let out = self.run(&["sessions", "events", session, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn only_session(&self) -> String {
        let sessions = self.json(&["sessions", "list", "--json"]);
        let list = sessions.as_array().expect("a list");
        assert_eq!(list.len(), 1, "expected one session: {sessions}");
        list[0]["id"].as_str().unwrap().to_string()
    }
}

/// The model cache the tests share (`KEEL_TEST_MODEL_DIR`, else `<workspace>/target/test-models`):
/// the real model is fetched into it once, never into the user's own cache.
pub fn test_model_cache() -> PathBuf {
    std::env::var_os("KEEL_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models"))
}

/// Starts keel with `KEEL_FAULT_PAUSE=point`, waits until it reports reaching that point,
/// and SIGKILLs it there. Returns false if keel finished without reaching it.
pub fn kill_at_fault_point(mut cmd: Command, point: &str) -> bool {
    let mut child = cmd
        .env("KEEL_FAULT_PAUSE", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keel");
    let stderr = child.stderr.take().unwrap();
    let marker = format!("keel-fault-point: {}", point.split(':').next().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains(&marker) {
                let _ = tx.send(true);
                return;
            }
        }
        let _ = tx.send(false);
    });
    let reached = rx.recv_timeout(Duration::from_secs(60)).unwrap_or(false);
    sigkill(&mut child);
    reached
}

/// SIGKILLs a child process and reaps it.
pub fn sigkill(child: &mut Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Waits for the child (reading its output as it comes, so a full pipe never blocks it);
/// SIGKILLs it and fails the test after `timeout`.
pub fn wait_with_timeout(child: Child, timeout: Duration) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait for keel"),
        Err(_) => {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            panic!("keel did not finish within {timeout:?}");
        }
    }
}

/// An external, side-effecting tool: applies each call once per idempotency key and
/// answers a repeated key with the first answer, recording every key it sees.
#[derive(Clone, Default)]
pub struct ToolRecorder {
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Default)]
pub struct Recorded {
    /// Every request's key, in arrival order (repeats included).
    pub seen: Vec<String>,
    /// The effect of each distinct key, applied once.
    pub applied: HashMap<String, Value>,
}

/// A `keel.toml` whose `default` agent runs the scripted model (answering after
/// `token_latency_ms` per token) with one tool, `record`: a `ToolRecorder` at `tool_url`.
pub fn recording_agent_config(tool_url: &str, token_latency_ms: u64) -> String {
    format!(
        r#"
[providers.scripted]
kind = "scripted"
token_latency_ms = {token_latency_ms}

[[agents]]
name = "default"
model = "scripted/echo"
tools = [{{ name = "record", kind = "http", url = "{tool_url}", allow_private = ["127.0.0.0/8"], description = "records a call" }}]
"#
    )
}

impl ToolRecorder {
    /// Serves on 127.0.0.1 from a background thread; returns the tool's URL.
    pub fn start(&self) -> String {
        let recorder = self.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new()
                    .route("/record", post(record))
                    .with_state(recorder);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        format!("http://{addr}/record")
    }

    pub fn seen(&self) -> Vec<String> {
        self.inner.lock().unwrap().seen.clone()
    }

    pub fn applied(&self) -> HashMap<String, Value> {
        self.inner.lock().unwrap().applied.clone()
    }
}

async fn record(
    State(recorder): State<ToolRecorder>,
    headers: HeaderMap,
    Json(args): Json<Value>,
) -> Json<Value> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut r = recorder.inner.lock().unwrap();
    r.seen.push(key.clone());
    let answer = r
        .applied
        .entry(key)
        .or_insert_with(|| serde_json::json!({"recorded": args}))
        .clone();
    Json(answer)
}

/// `keel serve` running on a free loopback port, with the admin key it printed on first
/// start. SIGTERMed (then reaped) when dropped.
pub struct KeelServer {
    pub child: Child,
    pub base: String,
    /// The admin key from the first start (`None` with `--no-auth` or a reused data dir).
    pub admin_key: Option<String>,
    /// stderr lines after the listening line, for tests that check what it logged.
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl KeelServer {
    pub fn start(home: &KeelHome, extra: &[&str]) -> KeelServer {
        KeelServer::start_with_env(home, extra, &[])
    }

    /// `start` with `env` added to keel's environment.
    pub fn start_with_env(home: &KeelHome, extra: &[&str], env: &[(&str, &str)]) -> KeelServer {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = home
            .command(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keel serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut admin_key = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    sigkill(&mut child);
                    panic!("keel serve did not report its address within 60s");
                }
            };
            let trimmed = line.trim();
            if trimmed.starts_with("kk_") {
                admin_key = Some(trimmed.to_string());
            }
            if let Some(addr) = line.strip_prefix("keel listening on ") {
                return KeelServer {
                    child,
                    base: addr.trim().to_string(),
                    admin_key,
                    stderr: rx,
                };
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "keel serve did not exit within 30s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KeelServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            sigkill(&mut self.child);
        }
    }
}

/// One server-sent event as a client sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
}

/// Parses an SSE byte stream incrementally (comments and keep-alives skipped).
#[derive(Default)]
pub struct SseParser {
    buffer: String,
    current: SseEvent,
}

impl SseParser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        let mut out = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let event = std::mem::take(&mut self.current);
                if !event.event.is_empty() || !event.data.is_empty() {
                    out.push(event);
                }
            } else if let Some(v) = line.strip_prefix("id:") {
                self.current.id = Some(v.trim_start().to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                self.current.event = v.trim_start().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !self.current.data.is_empty() {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        out
    }
}
