//! Human approval: a tool call that needs a person (a tool with `require_approval`, or the
//! built-in `ask_human`) makes its run wait. The wait and each decision are events, so a
//! waiting run survives restarts for as long as it takes, and every decision names its call
//! by id (parallel pending calls never get mixed up).

use serde::{Deserialize, Serialize};

/// The built-in tool through which a model asks a person a question; the answer is its result.
pub const ASK_HUMAN: &str = "ask_human";

/// Which calls of a tool need a person (`require_approval`): `true` every call, `false` (the
/// default) none, `{ argument = "to", matches = "*@example.org" }` the calls whose argument
/// matches the pattern (`*` stands for any text; a value that is not a string is matched as
/// its JSON text; a missing argument does not match), or `{ run_cost_usd_over = 0.5 }` the
/// calls a run asks for once its model steps have cost more than that (the catalog's prices).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApprovalRule {
    Every(bool),
    Matching(ArgumentPattern),
    Spending(SpendingLimit),
}

/// A run's spend past which its calls of a tool need a person.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendingLimit {
    pub run_cost_usd_over: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentPattern {
    pub argument: String,
    pub matches: String,
}

impl Default for ApprovalRule {
    fn default() -> Self {
        ApprovalRule::Every(false)
    }
}

impl ApprovalRule {
    pub fn is_never(&self) -> bool {
        *self == ApprovalRule::Every(false)
    }

    /// Whether a call with `arguments`, asked for by a run whose model steps cost `run_cost_usd`
    /// so far, needs a person.
    pub fn applies_to(&self, arguments: &serde_json::Value, run_cost_usd: f64) -> bool {
        match self {
            ApprovalRule::Every(every) => *every,
            ApprovalRule::Spending(SpendingLimit { run_cost_usd_over }) => {
                run_cost_usd > *run_cost_usd_over
            }
            ApprovalRule::Matching(ArgumentPattern { argument, matches }) => {
                match arguments.get(argument) {
                    Some(serde_json::Value::String(text)) => wildcard_match(matches, text),
                    Some(other) => wildcard_match(matches, &other.to_string()),
                    None => false,
                }
            }
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty(); // no `*`: the whole text
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Where a call that needs a person stands (`PendingToolCall::approval`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Approval {
    /// Needed, not asked for yet (`ApprovalRequested` is not logged).
    Required,
    /// Asked for: the run waits for a decision.
    Requested,
    /// A person decided.
    Decided { decision: Decision },
}

/// A person's decision on one waiting call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    /// Perform the call, with these arguments instead of the model's when set.
    Approve {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<serde_json::Value>,
    },
    /// Do not perform it; the model gets the reason as the call's error result.
    Reject {
        #[serde(default)]
        reason: String,
    },
    /// The answer to an `ask_human` question: the call's result.
    Answer { answer: String },
}

/// One call the run waits on, as `ApprovalRequested` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub call_id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

impl Decision {
    /// The result the model sees for a call decided without being performed, if any:
    /// `(content, is_error)`. An approval has none (the call is performed).
    pub fn result(&self) -> Option<(String, bool)> {
        match self {
            Decision::Approve { .. } => None,
            Decision::Reject { reason } if reason.is_empty() => {
                Some(("a person rejected this call".into(), true))
            }
            Decision::Reject { reason } => {
                Some((format!("a person rejected this call: {reason}"), true))
            }
            Decision::Answer { answer } => Some((answer.clone(), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rule_picks_the_calls_whose_argument_matches() {
        let rule = |text: &str| serde_json::from_str::<ApprovalRule>(text).unwrap();
        assert!(rule("true").applies_to(&json!({}), 0.0));
        assert!(!rule("false").applies_to(&json!({"to": "x"}), 0.0));
        let outside = rule(r#"{"argument": "to", "matches": "*@example.org"}"#);
        assert!(outside.applies_to(&json!({"to": "ann@example.org"}), 0.0));
        assert!(!outside.applies_to(&json!({"to": "ann@example.com"}), 0.0));
        assert!(!outside.applies_to(&json!({"cc": "ann@example.org"}), 0.0));
        let big = rule(r#"{"argument": "amount", "matches": "1????*"}"#);
        assert!(
            !big.applies_to(&json!({"amount": 12}), 0.0),
            "? is no wildcard"
        );
        let any_delete = rule(r#"{"argument": "sql", "matches": "*DELETE*"}"#);
        assert!(any_delete.applies_to(&json!({"sql": "BEGIN; DELETE FROM t"}), 0.0));
        assert!(!any_delete.applies_to(&json!({"sql": "SELECT 1"}), 0.0));
        let exact = rule(r#"{"argument": "n", "matches": "2"}"#);
        assert!(
            exact.applies_to(&json!({"n": 2}), 0.0) && !exact.applies_to(&json!({"n": 22}), 0.0)
        );
        assert!(serde_json::from_str::<ApprovalRule>(r#"{"argument": "a", "like": "b"}"#).is_err());
    }

    #[test]
    fn wildcards_match_anywhere_and_only_whole_texts_without_them() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "acb", false),
            ("*a*a*", "banana", true),
            ("ab*ba", "aba", false),
            ("abc", "abcd", false),
        ] {
            assert_eq!(
                wildcard_match(pattern, text),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }
}
