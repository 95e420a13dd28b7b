//! Property-based API testing with schemathesis (from PyPI) against `/openapi.json` of the
//! real server: no generated request may get a 5xx or a response that violates the schema.
//! The test installs schemathesis into a virtualenv under the target directory when missing,
//! so it runs on a fresh machine with only `python3` (and network access to PyPI) present.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::KeelServer;
use support::http::config;

/// The `st` executable, installed on first use.
fn schemathesis() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-venv");
    let st = venv.join("bin").join("st");
    if st.exists() {
        return st;
    }
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is needed to install schemathesis: install python3 (with venv)");
    assert!(
        created.success(),
        "python3 -m venv {} failed",
        venv.display()
    );
    let installed = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "schemathesis>=4,<5"])
        .status()
        .expect("run pip");
    assert!(
        installed.success(),
        "pip install schemathesis failed: check network access to PyPI"
    );
    st
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let st = schemathesis();
    let home = support::KeelHome::new(&config(0));
    let server = KeelServer::start(&home, &[]);
    let key = server.admin_key.clone().expect("admin key");
    // Run in the temporary home: schemathesis keeps a cache directory where it runs.
    // The hooks give schemathesis a serializer for keel's session files (JSON lines).
    let support = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support");
    let out = Command::new(&st)
        .current_dir(home.path())
        .env("PYTHONPATH", support)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", "50", "--seed", "1"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {key}"))
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    assert!(!report.contains("failed"), "{report}");
}
