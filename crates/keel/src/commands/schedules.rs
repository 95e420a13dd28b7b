//! `keel schedules list | add | rm SESSION`: a session's timers, through the embedded engine
//! or a running `keel serve` alike (`Client`), printed one line each.

use clap::{Args, Subcommand};
use keel_core::SessionId;
use serde_json::{Value, json};

use super::client::{ServerArgs, connect};
use crate::config::Config;

#[derive(Args)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    pub command: SchedulesCommand,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Subcommand)]
pub enum SchedulesCommand {
    /// The session's schedules: `ID  NEXT  SCHEDULE  fired N  NOTE`, those to come first.
    List { session: String },
    /// Add a schedule that starts a run with NOTE as its input: once (`--at`, `--after`) or on
    /// a cron pattern (`--cron`, read in `--tz`).
    Add {
        session: String,
        /// What the run it starts is told.
        #[arg(long)]
        note: String,
        #[command(flatten)]
        when: NewSchedule,
        /// The IANA time zone `--cron` is read in (default UTC).
        #[arg(long, requires = "cron")]
        tz: Option<String>,
    },
    /// Delete a schedule.
    Rm { session: String, schedule: String },
}

/// When a new schedule fires: exactly one of these.
#[derive(Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub struct NewSchedule {
    /// Once, at this RFC 3339 instant (`2026-12-01T09:00:00+01:00`).
    #[arg(long)]
    pub at: Option<String>,
    /// Once, this many seconds from now.
    #[arg(long)]
    pub after: Option<u64>,
    /// At every slot of this 5-field cron pattern (`"0 9 * * 1-5"`).
    #[arg(long)]
    pub cron: Option<String>,
}

impl NewSchedule {
    /// The body of `POST /v1/sessions/{id}/schedules`.
    pub fn body(&self, tz: Option<&str>, note: &str) -> Value {
        json!({"at": self.at, "after_secs": self.after, "cron": self.cron, "timezone": tz, "note": note})
    }

    /// The engine's view of it, a cron pattern read in `tz`.
    pub fn when(&self, tz: Option<&str>) -> anyhow::Result<keel_engine::When> {
        Ok(match (&self.at, self.after, &self.cron) {
            (Some(at), _, _) => keel_engine::When::At(keel_engine::parse_instant(at)?),
            (_, Some(secs), _) => keel_engine::When::After(std::time::Duration::from_secs(secs)),
            (_, _, Some(expr)) => keel_engine::When::Cron {
                expr: expr.clone(),
                timezone: tz.unwrap_or("UTC").into(),
            },
            _ => anyhow::bail!("give one of --at, --after or --cron"),
        })
    }
}

pub async fn run(config: &Config, args: SchedulesArgs) -> anyhow::Result<()> {
    let client = connect(config, args.server).await?;
    let done = match args.command {
        SchedulesCommand::List { session } => match session_id(&session) {
            Ok(id) => client.schedules(&id).await.map(|list| {
                for schedule in list["data"].as_array().into_iter().flatten() {
                    println!("{}", line(schedule));
                }
            }),
            Err(e) => Err(e),
        },
        SchedulesCommand::Add {
            session,
            note,
            when,
            tz,
        } => match session_id(&session) {
            Ok(id) => client
                .add_schedule(&id, &when, tz.as_deref(), &note)
                .await
                .map(|added| println!("{}", line(&added))),
            Err(e) => Err(e),
        },
        SchedulesCommand::Rm { session, schedule } => match session_id(&session) {
            Ok(id) => client
                .delete_schedule(&id, &schedule)
                .await
                .map(|()| println!("deleted {schedule}")),
            Err(e) => Err(e),
        },
    };
    client.close().await;
    done
}

fn session_id(text: &str) -> anyhow::Result<SessionId> {
    SessionId::parse(text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `ID  NEXT  SCHEDULE  fired N  NOTE`.
fn line(schedule: &Value) -> String {
    let when = match schedule["schedule"]["kind"].as_str() {
        Some("cron") => format!(
            "cron {:?} {}",
            schedule["schedule"]["expr"].as_str().unwrap_or("?"),
            schedule["schedule"]["timezone"].as_str().unwrap_or("?")
        ),
        _ => format!(
            "once {}",
            schedule["schedule"]["at"].as_str().unwrap_or("?")
        ),
    };
    format!(
        "{}  {}  {when}  fired {}  {}",
        schedule["id"].as_str().unwrap_or("?"),
        schedule["next_at"].as_str().unwrap_or("done"),
        schedule["fired"],
        schedule["note"].as_str().unwrap_or("")
    )
}
