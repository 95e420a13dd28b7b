//! `keel schedules list | add | rm SESSION` (or `--agent NAME`): a session's or an agent's
//! timers, through the embedded engine or a running `keel serve` alike (`Client`), printed
//! one line each.

use clap::{Args, Subcommand};
use keel_core::SessionId;
use keel_store::TimerOwner;
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
    /// The session's (or `--agent`'s) schedules: `ID  NEXT  SCHEDULE  fired N  NOTE`, those
    /// to come first.
    List {
        #[arg(required_unless_present = "agent", conflicts_with = "agent")]
        session: Option<String>,
        /// An agent's schedules instead of a session's.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Add a schedule that starts a run with NOTE as its input (on the session; with
    /// `--agent`, on a new session of the agent each time): once (`--at`, `--after`) or on a
    /// cron pattern (`--cron`, read in `--tz`).
    Add {
        #[arg(required_unless_present = "agent", conflicts_with = "agent")]
        session: Option<String>,
        /// Schedule an agent: each fire starts a new session of it.
        #[arg(long)]
        agent: Option<String>,
        /// What the run it starts is told.
        #[arg(long)]
        note: String,
        #[command(flatten)]
        when: NewSchedule,
        /// The IANA time zone `--cron` is read in (default UTC).
        #[arg(long, requires = "cron")]
        tz: Option<String>,
    },
    /// Delete a schedule: `rm SESSION SCHEDULE` or `rm --agent NAME SCHEDULE`.
    Rm {
        /// The session and the schedule, or the schedule alone with `--agent`.
        #[arg(required = true, num_args = 1..=2, value_name = "ID")]
        ids: Vec<String>,
        /// The agent whose schedule it is.
        #[arg(long)]
        agent: Option<String>,
    },
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
    /// The body of `POST /v1/sessions/{id}/schedules` (and of an agent's).
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
    // What is asked is read before anything opens: a bad id or owner says so first.
    let asked = match args.command {
        SchedulesCommand::List { session, agent } => Asked::List(owner(session, agent)?),
        SchedulesCommand::Add {
            session,
            agent,
            note,
            when,
            tz,
        } => Asked::Add(owner(session, agent)?, when, tz, note),
        SchedulesCommand::Rm { mut ids, agent } => {
            let schedule = ids.pop().unwrap_or_default();
            match (ids.pop(), agent) {
                (session, None) if session.is_some() => Asked::Rm(owner(session, None)?, schedule),
                (None, Some(agent)) => Asked::Rm(TimerOwner::Agent(agent), schedule),
                _ => anyhow::bail!("give `rm SESSION SCHEDULE` or `rm --agent NAME SCHEDULE`"),
            }
        }
    };
    let client = connect(config, args.server).await?;
    let done = match asked {
        Asked::List(owner) => client.schedules(&owner).await.map(|list| {
            for schedule in list["data"].as_array().into_iter().flatten() {
                println!("{}", line(schedule));
            }
        }),
        Asked::Add(owner, when, tz, note) => client
            .add_schedule(&owner, &when, tz.as_deref(), &note)
            .await
            .map(|added| println!("{}", line(&added))),
        Asked::Rm(owner, schedule) => client
            .delete_schedule(&owner, &schedule)
            .await
            .map(|()| println!("deleted {schedule}")),
    };
    client.close().await;
    done
}

/// A subcommand, its owner read.
enum Asked {
    List(TimerOwner),
    Add(TimerOwner, NewSchedule, Option<String>, String),
    Rm(TimerOwner, String),
}

/// The session named, or the agent (`--agent`); clap lets exactly one through.
fn owner(session: Option<String>, agent: Option<String>) -> anyhow::Result<TimerOwner> {
    match (session, agent) {
        (Some(session), None) => Ok(TimerOwner::Session(
            SessionId::parse(&session).map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
        (None, Some(agent)) => Ok(TimerOwner::Agent(agent)),
        _ => anyhow::bail!("give a session id or --agent NAME, not both"),
    }
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
