//! The compiled interpreter, cached beside the wasm: Cranelift takes tens of seconds over the
//! ~99 MB module, so the first load serializes its result to `<wasm>.<key>.cwasm` and later
//! loads map that file instead. The key is the wasm's SHA-256 with wasmtime's version and the
//! engine settings that shape the code, so a new wasm or a new wasmtime compiles afresh.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use crate::error::SandboxError;

/// The engine settings baked into compiled code (see `interpreter::engine`).
pub(crate) const SETTINGS: &str = "epoch_interruption;cranelift-opt-speed;gc-drc";

/// How a module was obtained, for the logs and the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    Cached,
}

/// The module for `wasm`: the cached compilation when there is a usable one, else a fresh
/// compile, stored for next time (a failure to store is logged, not fatal).
pub(crate) fn load(engine: &Engine, wasm: &Path) -> Result<(Module, Origin), SandboxError> {
    let bytes = fs::read(wasm).map_err(|source| SandboxError::Io {
        path: wasm.to_path_buf(),
        source,
    })?;
    let cached = cache_path(wasm, &bytes);
    if cached.is_file() {
        // SAFETY: the file is one this code wrote with `Module::serialize` (renamed into place
        // only when complete), named by the digest of the wasm it came from; wasmtime checks
        // its version and settings again as it loads it.
        match unsafe { Module::deserialize_file(engine, &cached) } {
            Ok(module) => return Ok((module, Origin::Cached)),
            Err(e) => {
                tracing::warn!(path = %cached.display(), error = %e, "compiled interpreter unusable; compiling again");
            }
        }
    }
    let started = std::time::Instant::now();
    let module = Module::new(engine, &bytes).map_err(|e| SandboxError::BadModule {
        path: wasm.to_path_buf(),
        reason: format!("{e:#}"),
    })?;
    tracing::info!(path = %wasm.display(), secs = started.elapsed().as_secs_f64(), "interpreter compiled");
    match module.serialize() {
        Ok(code) => {
            if let Err(e) = store(&cached, &code) {
                tracing::warn!(path = %cached.display(), error = %e, "cannot cache the compiled interpreter");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot serialize the compiled interpreter"),
    }
    Ok((module, Origin::Compiled))
}

/// `<wasm>.<first 16 hex digits of the key>.cwasm`.
fn cache_path(wasm: &Path, bytes: &[u8]) -> PathBuf {
    let mut key = Sha256::new();
    key.update(Sha256::digest(bytes));
    key.update(env!("CARGO_PKG_VERSION").as_bytes());
    key.update(wasmtime_version().as_bytes());
    key.update(SETTINGS.as_bytes());
    let key: String = key.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut name = wasm.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{key}.cwasm"));
    wasm.with_file_name(name)
}

/// The wasmtime release this crate is built against (pinned in Cargo.toml).
fn wasmtime_version() -> &'static str {
    "wasmtime-48.0.8"
}

/// Writes `code` to a temporary file beside `path` and renames it there, so a reader never
/// maps a half-written file.
fn store(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(code)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    let result = write();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
