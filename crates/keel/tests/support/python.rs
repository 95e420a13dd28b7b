//! The official `openai` Python SDK for tests that drive keel as its users would
//! (`openai_sdk.rs`, `readme.rs`): installed once into a virtualenv under the target
//! directory, so they run on a fresh machine with only `python3` (and PyPI) present.

use std::path::PathBuf;
use std::process::Command;

/// The SDK release the tests are written against (it has `responses` and `conversations`).
const OPENAI_SDK: &str = "2.54.0";

/// The virtualenv's python with the SDK installed, installing it on first use. Tests run in
/// parallel (and nextest runs each in its own process), so the venv is built under a private
/// name and renamed into place: whoever renames first wins, and nobody sees a half-built one.
pub fn openai_sdk() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = tmp.join(format!("openai-sdk-{OPENAI_SDK}"));
    let python = venv.join("bin").join("python");
    if python.exists() {
        return python;
    }
    let building = tmp.join(format!(
        "openai-sdk-{OPENAI_SDK}.building-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&building);
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&building)
        .status()
        .expect("python3 is needed to run the openai SDK tests: install python3 (with venv)");
    assert!(
        created.success(),
        "python3 -m venv {} failed",
        building.display()
    );
    let installed = Command::new(building.join("bin").join("python"))
        .args(["-m", "pip", "install", "--quiet"])
        .arg(format!("openai=={OPENAI_SDK}"))
        .status()
        .expect("run pip");
    assert!(
        installed.success(),
        "pip install openai=={OPENAI_SDK} failed: check network access to PyPI"
    );
    // A venv finds its packages relative to its own directory, so it survives the rename.
    if std::fs::rename(&building, &venv).is_err() {
        // Another test installed it first.
        let _ = std::fs::remove_dir_all(&building);
    }
    assert!(python.exists(), "no python in {}", venv.display());
    python
}
