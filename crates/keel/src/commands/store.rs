//! `keel store check`: lists the stored records this keel cannot decode (damaged, edited by
//! hand, or written by a newer keel). keel isolates such records while it runs — a run that
//! cannot be read is failed, listings skip the row — and this says which they are.

use clap::Subcommand;

use crate::config::Config;
use crate::runtime::open_store;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Decode every stored record and list those that cannot be read; exits 1 when any is found.
    Check {
        /// The most records to list.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Whether the store holds no unreadable record.
pub async fn run(config: &Config, command: StoreCommand) -> anyhow::Result<bool> {
    let store = keel_engine::StoreReader::new(open_store(config).await?);
    match command {
        StoreCommand::Check { limit, json } => {
            let found = store.unreadable_records(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else if found.is_empty() {
                println!("every stored record can be read");
            } else {
                for r in &found {
                    let tenant = r.tenant.as_deref().unwrap_or("?");
                    println!("{} {} (tenant {tenant}): {}", r.kind, r.id, r.reason);
                }
                println!(
                    "{} unreadable record(s): restore them from a backup, or delete the sessions they belong to",
                    found.len()
                );
            }
            Ok(found.is_empty())
        }
    }
}
