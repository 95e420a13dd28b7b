//! The core must stay pure: this test reads `cargo tree` for keel-core and fails if an async
//! runtime, the store, or an HTTP or database crate ever becomes one of its dependencies.

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "hyper",
    "reqwest",
    "axum",
    "rusqlite",
    "sqlx",
    "postgres",
    "keel-store",
    "keel-models",
    "keel-engine",
    "rand",
    "getrandom",
];

#[test]
fn keel_core_depends_on_no_io_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "keel-core",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"serde"),
        "cargo tree output looks wrong:\n{tree}"
    );
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|f| names.contains(f)).collect();
    assert!(
        found.is_empty(),
        "keel-core must do no I/O, but depends on {found:?}:\n{tree}"
    );
}
