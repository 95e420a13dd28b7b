//! The live MCP connections, one per (tenant, agent, server definition), kept alive between
//! calls and runs: started lazily when a run first needs the server (so after a keel restart
//! they come back on first use), started again after the server crashed or the session was
//! lost, closed after a while unused, and all closed when keel shuts down. A tool list is
//! cached per connection until the server says it changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_core::{AgentId, TenantId};

use super::session::{Failure, McpSession, ServerTool};

/// A connection unused this long is closed (its server stopped); the next call starts it again.
const IDLE: Duration = Duration::from_secs(600);

/// Whose connection it is: a tenant's agent's server, by the definition's exact text (a new
/// version that changes the server gets its own connection).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct PoolKey {
    pub tenant: TenantId,
    pub agent: AgentId,
    pub server: String,
    pub definition: String,
}

/// A live connection and its cached tool list.
pub(crate) struct Connection {
    pub session: McpSession,
    tools: tokio::sync::Mutex<Option<Arc<Vec<ServerTool>>>>,
}

impl Connection {
    /// The server's tools: the cached list unless the server said they changed.
    pub(crate) async fn tools(&self) -> Result<Arc<Vec<ServerTool>>, Failure> {
        let mut cached = self.tools.lock().await;
        let changed = self.session.take_tools_changed();
        match &*cached {
            Some(tools) if !changed => Ok(tools.clone()),
            _ => {
                let tools = Arc::new(self.session.list_tools().await?);
                *cached = Some(tools.clone());
                Ok(tools)
            }
        }
    }
}

#[derive(Default)]
struct Slot {
    /// Held while connecting, so concurrent first calls start the server once.
    live: tokio::sync::Mutex<Option<Arc<Connection>>>,
    last_used: Mutex<Option<Instant>>,
}

#[derive(Default)]
pub(crate) struct McpPool {
    slots: Mutex<HashMap<PoolKey, Arc<Slot>>>,
}

impl McpPool {
    /// The live connection for `key`, connecting with `connect` when there is none or the
    /// last one was lost.
    pub(crate) async fn connection<F, Fut>(
        &self,
        key: &PoolKey,
        connect: F,
    ) -> Result<Arc<Connection>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<McpSession, String>>,
    {
        self.close_idle();
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        *slot.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let mut live = slot.live.lock().await;
        if let Some(connection) = &*live {
            if !connection.session.is_closed() {
                return Ok(connection.clone());
            }
            tracing::warn!(server = %key.server, "the MCP server's connection was lost; starting it again");
        }
        let session = connect().await?;
        let connection = Arc::new(Connection {
            session,
            tools: tokio::sync::Mutex::new(None),
        });
        *live = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets `connection` if it is still `key`'s, so the next call connects anew.
    pub(crate) async fn forget(&self, key: &PoolKey, connection: &Arc<Connection>) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        if let Some(slot) = slot {
            let mut live = slot.live.lock().await;
            if live.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection)) {
                *live = None;
            }
        }
    }

    /// Closes every connection unused for `IDLE`, in the background.
    fn close_idle(&self) {
        let now = Instant::now();
        let idle: Vec<Arc<Slot>> = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<PoolKey> = slots
                .iter()
                .filter(|(_, slot)| {
                    slot.last_used
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some_and(|used| now.duration_since(used) > IDLE)
                })
                .map(|(key, _)| key.clone())
                .collect();
            keys.iter().filter_map(|k| slots.remove(k)).collect()
        };
        if !idle.is_empty() {
            tokio::spawn(close_all(idle));
        }
    }

    /// Closes every connection (keel is shutting down); a call after this connects anew.
    pub(crate) async fn shutdown(&self) {
        let all: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, slot)| slot)
            .collect();
        close_all(all).await;
    }
}

/// Closes the slots' connections side by side; a connection still in use by a call is left to
/// close (and its server to be killed) when that call drops it.
async fn close_all(slots: Vec<Arc<Slot>>) {
    let closing = slots.into_iter().map(|slot| async move {
        let taken = slot.live.lock().await.take();
        if let Some(connection) = taken
            && let Ok(connection) = Arc::try_unwrap(connection)
        {
            connection.session.close().await;
        }
    });
    futures::future::join_all(closing).await;
}
