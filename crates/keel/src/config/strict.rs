//! Reads `keel.toml` strictly: a key keel does not read is refused with its full path and the
//! nearest known key, never dropped without a word. The file is parsed as TOML first (syntax
//! errors keep toml's line and column); then the typed config is read from that tree by
//! `Node`, whose error remembers the unknown key and the keys that were expected (serde hands
//! both to `Error::unknown_field`) and the path where it happened.
//!
//! Every config type denies unknown fields; a type that forgets to still has its ignored keys
//! collected here (`deserialize_ignored_any`), so nothing slips through silently.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use toml::Value;

/// Reads `T` from a parsed file; `Err` lists every problem, one line each, its path first.
pub fn from_tree<T: DeserializeOwned>(root: &Value) -> Result<T, Vec<String>> {
    let ignored = RefCell::new(Vec::new());
    let node = Node {
        value: root,
        at: Vec::new(),
        siblings: None,
        ignored: &ignored,
    };
    let result = T::deserialize(node);
    let mut problems = ignored.into_inner();
    match result {
        Ok(value) if problems.is_empty() => return Ok(value),
        Ok(_) => {}
        Err(problem) => problems.push(problem),
    }
    Err(problems.into_iter().map(|p| p.render(root)).collect())
}

/// The known name nearest to `word`: one a few edits away or sharing a word with it, those
/// that start with the same word first (`context_tokens` is nearer `context_messages` than
/// `max_output_tokens`), then by edit distance.
pub fn nearest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let words = |s: &str| -> Vec<String> {
        s.split('_')
            .filter(|w| w.len() >= 3)
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let first = |s: &str| s.split('_').next().unwrap_or(s).to_ascii_lowercase();
    let mine = words(word);
    known
        .iter()
        .map(|k| (first(k) != first(word), edit_distance(word, k), *k))
        .filter(|(_, d, k)| {
            (*d <= word.len().max(3) / 3 && *d < word.len())
                || words(k).iter().any(|w| mine.contains(w))
        })
        .min_by_key(|(other_first, d, _)| (*other_first, *d))
        .map(|(_, _, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// What went wrong, and (once known) where: the innermost table or array that saw it.
#[derive(Debug)]
pub struct Problem {
    at: Option<Vec<Step>>,
    what: What,
}

#[derive(Debug)]
enum What {
    UnknownKey {
        key: String,
        known: &'static [&'static str],
    },
    UnknownVariant {
        name: String,
        known: &'static [&'static str],
    },
    Other(String),
}

impl Problem {
    fn at(mut self, at: &[Step]) -> Problem {
        self.at.get_or_insert_with(|| at.to_vec());
        self
    }

    fn render(self, root: &Value) -> String {
        let at = self.at.unwrap_or_default();
        let (name, known, variant) = match self.what {
            What::Other(message) if at.is_empty() => return message,
            What::Other(message) => return format!("`{}`: {message}", render_path(root, &at)),
            What::UnknownKey { key, known } => (key, known, false),
            What::UnknownVariant { name, known } => (name, known, true),
        };
        // Inside an internally tagged enum (a provider's table) serde reads a buffered copy,
        // so the path ends at the provider: find the table below it that holds the key.
        let (path, is_key) = locate(root, at, &name, known, variant);
        let what = if is_key {
            "unknown key".to_string()
        } else {
            format!("unknown value `{name}`")
        };
        let hint = match nearest(&name, known) {
            Some(near) => format!("; did you mean `{near}`?"),
            None if known.is_empty() => String::new(),
            None => format!(
                " ({}: {})",
                if is_key { "keys here" } else { "one of" },
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!("`{}`: {what}{hint}", render_path(root, &path))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            What::UnknownKey { key, .. } => write!(f, "unknown key `{key}`"),
            What::UnknownVariant { name, .. } => write!(f, "unknown value `{name}`"),
            What::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Problem {}

impl de::Error for Problem {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Problem {
            at: None,
            what: What::Other(msg.to_string()),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Problem {
            at: None,
            what: What::UnknownKey {
                key: field.to_string(),
                known: expected,
            },
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Problem {
            at: None,
            what: What::UnknownVariant {
                name: variant.to_string(),
                known: expected,
            },
        }
    }
}

/// Where the unknown `name` sits at or below `at`, and whether it is a key (else a value).
/// Prefers a table whose other keys all belong beside it.
fn locate(
    root: &Value,
    at: Vec<Step>,
    name: &str,
    known: &[&str],
    variant: bool,
) -> (Vec<Step>, bool) {
    let Some(node) = lookup(root, &at) else {
        return (at, !variant);
    };
    if variant && node.as_str() == Some(name) {
        return (at, false);
    }
    let mut found = Vec::new();
    find(node, &mut at.clone(), name, variant, &mut found);
    let fits = |(path, is_key): &(Vec<Step>, bool)| {
        let parent = lookup(root, &path[..path.len() - 1]);
        !is_key
            || parent
                .and_then(Value::as_table)
                .is_some_and(|t| t.keys().all(|k| k == name || known.contains(&k.as_str())))
    };
    let best = found.iter().position(fits).unwrap_or(0);
    match found.into_iter().nth(best) {
        Some(hit) => hit,
        None => {
            let mut path = at;
            path.push(Step::Key(name.to_string()));
            (path, !variant)
        }
    }
}

/// Every place below `node` (itself included) where `name` is a key, or (for a variant) a
/// string value, in document order.
fn find(
    node: &Value,
    at: &mut Vec<Step>,
    name: &str,
    variant: bool,
    out: &mut Vec<(Vec<Step>, bool)>,
) {
    match node {
        Value::Table(table) => {
            for (key, value) in table {
                at.push(Step::Key(key.clone()));
                if key == name {
                    out.push((at.clone(), true));
                } else if variant && value.as_str() == Some(name) {
                    out.push((at.clone(), false));
                }
                find(value, at, name, variant, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Step::Index(i));
                find(item, at, name, variant, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn lookup<'v>(root: &'v Value, at: &[Step]) -> Option<&'v Value> {
    at.iter().try_fold(root, |node, step| match step {
        Step::Key(k) => node.get(k.as_str()),
        Step::Index(i) => node.get(*i),
    })
}

/// `agents.support.limits.context_tokens`: an element of an array of tables is named by its
/// `name` when it has one, else by its index (`targets[0]`).
fn render_path(root: &Value, at: &[Step]) -> String {
    let mut out = String::new();
    let mut node = Some(root);
    for step in at {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&toml_key(key));
                node = node.and_then(|n| n.get(key.as_str()));
            }
            Step::Index(i) => {
                node = node.and_then(|n| n.get(*i));
                match node.and_then(|n| n.get("name")).and_then(Value::as_str) {
                    Some(name) => {
                        out.push('.');
                        out.push_str(&toml_key(name));
                    }
                    None => {
                        let _ = write!(out, "[{i}]");
                    }
                }
            }
        }
    }
    out
}

/// A key as TOML writes it: bare when it can be, quoted otherwise (`catalog."openai/gpt-4o"`).
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// One value of the tree, at `at`; `siblings` are the keys known beside it when it is a
/// struct's field.
struct Node<'de, 'a> {
    value: &'de Value,
    at: Vec<Step>,
    siblings: Option<&'static [&'static str]>,
    ignored: &'a RefCell<Vec<Problem>>,
}

impl<'de, 'a> Node<'de, 'a> {
    fn table(
        &self,
        table: &'de toml::Table,
        known: Option<&'static [&'static str]>,
    ) -> Table<'de, 'a> {
        Table {
            entries: table.iter(),
            pending: None,
            at: self.at.clone(),
            known,
            ignored: self.ignored,
        }
    }
}

impl<'de> de::Deserializer<'de> for Node<'de, '_> {
    type Error = Problem;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.value {
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Integer(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Boolean(b) => visitor.visit_bool(*b),
            Value::Datetime(d) => visitor.visit_string(d.to_string()),
            Value::Array(items) => visitor.visit_seq(Array {
                items: items.iter().enumerate(),
                at: self.at.clone(),
                ignored: self.ignored,
            }),
            Value::Table(table) => visitor.visit_map(self.table(table, None)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Problem> {
        match self.value {
            Value::Table(table) => visitor.visit_map(self.table(table, Some(fields))),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Problem> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Problem> {
        match self.value {
            Value::String(s) => visitor.visit_enum(BorrowedStrDeserializer::new(s)),
            Value::Table(table) if table.len() == 1 => {
                visitor.visit_enum(MapAccessDeserializer::new(self.table(table, None)))
            }
            Value::Table(_) => Err(de::Error::custom(format!(
                "expected a table with exactly one of {}",
                variants
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            _ => self.deserialize_any(visitor),
        }
    }

    /// A struct skips a key it does not know this way (when it does not deny it): record it.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        if let Some((Step::Key(key), parent)) = self.at.split_last() {
            let problem = Problem {
                at: Some(parent.to_vec()),
                what: What::UnknownKey {
                    key: key.clone(),
                    known: self.siblings.unwrap_or(&[]),
                },
            };
            self.ignored.borrow_mut().push(problem);
        }
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

/// A table's entries, for a struct (whose `known` keys are remembered) or a map.
struct Table<'de, 'a> {
    entries: toml::map::Iter<'de, String, Value>,
    pending: Option<(&'de String, &'de Value)>,
    at: Vec<Step>,
    known: Option<&'static [&'static str]>,
    ignored: &'a RefCell<Vec<Problem>>,
}

impl<'de> de::MapAccess<'de> for Table<'de, '_> {
    type Error = Problem;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Problem> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key, value));
        seed.deserialize(BorrowedStrDeserializer::<Problem>::new(key))
            .map(Some)
            .map_err(|e| e.at(&self.at))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Problem> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value was read before its key"));
        };
        let mut at = self.at.clone();
        at.push(Step::Key(key.clone()));
        let node = Node {
            value,
            at: at.clone(),
            siblings: self.known,
            ignored: self.ignored,
        };
        seed.deserialize(node).map_err(|e| e.at(&at))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Array<'de, 'a> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
    at: Vec<Step>,
    ignored: &'a RefCell<Vec<Problem>>,
}

impl<'de> de::SeqAccess<'de> for Array<'de, '_> {
    type Error = Problem;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Problem> {
        let Some((i, value)) = self.items.next() else {
            return Ok(None);
        };
        let mut at = self.at.clone();
        at.push(Step::Index(i));
        let node = Node {
            value,
            at: at.clone(),
            siblings: None,
            ignored: self.ignored,
        };
        seed.deserialize(node).map(Some).map_err(|e| e.at(&at))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key_or_none() {
        let limits = [
            "max_steps",
            "max_model_attempts",
            "max_output_tokens",
            "context_messages",
        ];
        assert_eq!(nearest("max_step", &limits), Some("max_steps"));
        assert_eq!(nearest("context_tokens", &limits), Some("context_messages"));
        assert_eq!(nearest("colour", &limits), None);
        assert_eq!(nearest("DATADIR", &["DATA_DIR", "LOG"]), Some("DATA_DIR"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
