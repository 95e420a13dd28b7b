//! `keel agents list | show`.

use clap::Subcommand;
use keel_core::TenantId;

use crate::config::Config;
use crate::runtime::open_store;

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// The latest version of every agent.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One agent's definition (the latest version unless --version).
    // Its `--version N` takes the place of the version flag `propagate_version` would add.
    #[command(disable_version_flag = true)]
    Show {
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
}

pub async fn run(config: &Config, command: AgentsCommand) -> anyhow::Result<()> {
    let store = keel_engine::StoreReader::new(open_store(config).await?);
    let tenant = TenantId::default_tenant();
    match command {
        AgentsCommand::List { json } => {
            let agents = store.list_agents(&tenant).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&agents)?);
            } else {
                for a in agents {
                    println!(
                        "{}  v{}  model={}  tools={}",
                        a.name,
                        a.version,
                        a.model,
                        a.tools.len()
                    );
                }
            }
        }
        AgentsCommand::Show { name, version } => {
            let agent = store
                .get_agent(&tenant, &name, version)
                .await?
                .ok_or_else(|| anyhow::anyhow!("agent {name:?} (version {version:?}) not found; `keel agents list` shows them"))?;
            println!("{}", serde_json::to_string_pretty(&agent)?);
        }
    }
    Ok(())
}
