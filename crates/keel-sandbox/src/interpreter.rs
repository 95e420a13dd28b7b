//! The loaded interpreter: one wasmtime engine, the compiled `python.wasm`, the linker with
//! WASI preview 1 and the interpreter's one custom import, and the folder that holds the
//! standard library's zip where CPython looks for it (`/usr/local/lib/python315.zip`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::{Config, Engine, Linker, Module, OptLevel};

use crate::call::CallState;
use crate::compiled::{self, Origin};
use crate::error::SandboxError;
use crate::ticker::Ticker;

/// The name CPython 3.15 gives its zipped standard library on `sys.path`.
pub const STDLIB_ZIP_NAME: &str = "python315.zip";

/// A compiled interpreter, shared by every call (each call gets a fresh instance).
pub struct Interpreter {
    pub(crate) engine: Engine,
    pub(crate) module: Module,
    pub(crate) linker: Linker<CallState>,
    pub(crate) lib_dir: PathBuf,
    pub(crate) ticker: Arc<Ticker>,
    origin: Origin,
}

impl Interpreter {
    /// Loads `wasm` (compiling it, or mapping its cached compilation) and makes `stdlib_zip`
    /// visible to programs, read-only, as `/usr/local/lib/python315.zip`.
    pub fn load(wasm: &Path, stdlib_zip: &Path) -> Result<Self, SandboxError> {
        let engine = engine()?;
        let lib_dir = stdlib_folder(wasm, stdlib_zip)?;
        let (module, origin) = compiled::load(&engine, wasm)?;
        let linker = crate::call::linker(&engine).map_err(|e| SandboxError::BadModule {
            path: wasm.to_path_buf(),
            reason: format!("{e:#}"),
        })?;
        let ticker = Ticker::start(&engine);
        Ok(Interpreter {
            engine,
            module,
            linker,
            lib_dir,
            ticker,
            origin,
        })
    }

    /// Whether `load` compiled the module (`false`: it mapped the cached compilation).
    pub fn was_compiled(&self) -> bool {
        self.origin == Origin::Compiled
    }
}

fn engine() -> Result<Engine, SandboxError> {
    let mut config = Config::new();
    // Keep in step with `compiled::SETTINGS`.
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    Engine::new(&config).map_err(|e| SandboxError::Start(format!("{e:#}")))
}

/// A folder beside the wasm holding only the stdlib zip under the name CPython looks for
/// (a hard link, or a copy where links are refused), granted read-only to every call.
fn stdlib_folder(wasm: &Path, stdlib_zip: &Path) -> Result<PathBuf, SandboxError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SandboxError::Io { path, source }
    };
    let size = fs::metadata(stdlib_zip).map_err(io(stdlib_zip))?.len();
    let dir = wasm.with_file_name(".wasi-python-lib");
    let dest = dir.join(STDLIB_ZIP_NAME);
    if fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
        return Ok(dir);
    }
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tmp = dir.join(format!(".{STDLIB_ZIP_NAME}.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    if fs::hard_link(stdlib_zip, &tmp).is_err() {
        fs::copy(stdlib_zip, &tmp).map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &dest).map_err(io(&dest))?;
    Ok(dir)
}
