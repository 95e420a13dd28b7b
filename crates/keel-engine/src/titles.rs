//! A session's title: its first user message, shortened, for lists (`keel sessions list`,
//! chat's `/sessions`, the API's session object). Derived from the log when asked rather than
//! stored: nothing to keep in step with the log, and no extra write at a session's first turn.

use keel_core::{Role, SessionId};

use crate::StoreReader;

/// The most characters a title keeps (an ellipsis marks a cut).
pub const TITLE_CHARS: usize = 48;

/// How many events after `session_started` are searched for the first user message: its
/// first run's input, or the first items a conversation was given.
const EVENTS_SEARCHED: usize = 4;

impl StoreReader {
    /// The session's title, `None` before its first user message. A log that cannot be read
    /// gives no title (logged): a list of many sessions goes on without it.
    pub async fn session_title(&self, session: &SessionId) -> Option<String> {
        let events = match self.read_events(session, 1, EVENTS_SEARCHED).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(%session, error = %e, "cannot read the session's first events for its title");
                return None;
            }
        };
        events
            .iter()
            .flat_map(|e| e.body.messages())
            .find(|m| m.role == Role::User)
            .map(|m| shorten(&m.text_content()))
            .filter(|t| !t.is_empty())
    }
}

/// `text` on one line, whitespace collapsed, cut at a word within `TITLE_CHARS` characters.
pub fn shorten(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= TITLE_CHARS {
        return line;
    }
    let head: String = line.chars().take(TITLE_CHARS - 1).collect();
    let cut = match head.rfind(' ') {
        Some(space) if space >= head.len() / 2 => &head[..space],
        _ => &head,
    };
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_message_is_its_own_title_on_one_line() {
        assert_eq!(shorten("  what is\n a  lease? "), "what is a lease?");
    }

    #[test]
    fn a_long_message_is_cut_at_a_word_with_an_ellipsis() {
        let title = shorten(
            "please summarise the design of the session store and its leases in three lines",
        );
        assert_eq!(title, "please summarise the design of the session…");
        assert!(title.chars().count() <= TITLE_CHARS);
    }

    #[test]
    fn a_long_word_is_cut_inside_it() {
        let title = shorten(&"é".repeat(100));
        assert_eq!(title.chars().count(), TITLE_CHARS);
        assert!(title.ends_with('…'));
    }
}
