//! How deep JSON may nest, so that whatever keel accepts it can read back. serde_json
//! refuses to read text nested deeper than 128 levels, and stored records wrap what a caller
//! sent in a few levels of their own (an event around an agent around its tools), so a value
//! that arrived at depth 127 would be written fine and never read again. One limit is
//! applied where JSON enters (`MAX_JSON_DEPTH`), and the store refuses to write any text
//! deeper than it can read (`MAX_STORED_JSON_DEPTH`), which the wrapping never reaches.

use serde_json::Value;

/// The deepest nesting of arrays and objects accepted in a request body or any JSON value
/// keel stores (tool schemas, metadata, tool arguments, response formats).
pub const MAX_JSON_DEPTH: usize = 64;

/// The deepest a stored JSON text may nest: below serde_json's reading limit of 128, and far
/// above `MAX_JSON_DEPTH` plus the few levels a stored record adds around it.
pub const MAX_STORED_JSON_DEPTH: usize = 120;

/// A JSON value nested deeper than a limit; `path` names where (`metadata.a[0].b`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{path}` nests arrays and objects deeper than {limit} levels, the most keel accepts: send a flatter value"
)]
pub struct TooDeep {
    pub path: String,
    pub limit: usize,
}

/// The byte offset of the first `[` or `{` of `text` that opens level `limit + 1`, if any.
/// Strings are skipped (brackets inside them do not count); the text need not be valid JSON.
/// One pass over the bytes with no allocation: cheap enough for every request.
pub fn first_too_deep(text: &[u8], limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => i = string_end(text, i),
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Checks JSON text against `limit`; the error names the path to the level too many.
/// `root` names the text itself (e.g. `body`, or a field holding embedded JSON).
pub fn check_text(text: &[u8], limit: usize, root: &str) -> Result<(), TooDeep> {
    match first_too_deep(text, limit) {
        None => Ok(()),
        Some(at) => Err(TooDeep {
            path: path_at(text, at, root),
            limit,
        }),
    }
}

/// JSON text carried in a string (tool-call arguments), parsed only when it is valid and
/// nests no deeper than `MAX_JSON_DEPTH`; otherwise `None`, and the caller keeps the text as
/// a string, which always reads back.
pub fn parse_embedded(text: &str) -> Option<Value> {
    match first_too_deep(text.as_bytes(), MAX_JSON_DEPTH) {
        Some(_) => None,
        None => serde_json::from_str(text).ok(),
    }
}

/// Checks a parsed value against `limit` (1 for a scalar inside nothing, as for text).
pub fn check_value(value: &Value, limit: usize, root: &str) -> Result<(), TooDeep> {
    let mut path = Vec::new();
    match too_deep_in(value, 1, limit, &mut path) {
        false => Ok(()),
        true => Err(TooDeep {
            path: render_path(root, &path),
            limit,
        }),
    }
}

/// Whether `value` (at `depth` if it is an array or object) holds a container past `limit`;
/// on `true`, `path` holds the way to it.
fn too_deep_in(value: &Value, depth: usize, limit: usize, path: &mut Vec<Segment>) -> bool {
    let children: Box<dyn Iterator<Item = (Segment, &Value)>> = match value {
        Value::Array(items) => Box::new(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (Segment::Index(i), v)),
        ),
        Value::Object(map) => Box::new(map.iter().map(|(k, v)| (Segment::Key(k.clone()), v))),
        _ => return false,
    };
    if depth > limit {
        return true;
    }
    for (segment, child) in children {
        path.push(segment);
        if too_deep_in(child, depth + 1, limit, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// The index of the closing quote of the string that opens at `open` (or the end). Most of a
/// request's bytes are inside strings (message text), so this jumps from quote or backslash to
/// the next with `memchr` rather than looking at every byte.
fn string_end(text: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while let Some(found) = memchr::memchr2(b'"', b'\\', &text[i.min(text.len())..]) {
        i += found;
        match text[i] {
            b'"' => return i,
            _ => i += 2,
        }
    }
    text.len()
}

enum Segment {
    Key(String),
    Index(usize),
}

/// The path of keys and indexes that leads to the container opening at `at`. Only called on
/// an error, so it may allocate.
fn path_at(text: &[u8], at: usize, root: &str) -> String {
    // One entry per open container: its segment so far, and whether a key is expected next.
    let mut open: Vec<(Option<Segment>, bool)> = Vec::new();
    let mut i = 0;
    while i < at {
        match text[i] {
            b'"' => {
                let end = string_end(text, i);
                if let Some((segment, expects_key)) = open.last_mut()
                    && *expects_key
                {
                    let key = String::from_utf8_lossy(&text[i + 1..end.min(text.len())]);
                    *segment = Some(Segment::Key(key.into_owned()));
                    *expects_key = false;
                }
                i = end;
            }
            b'{' => open.push((None, true)),
            b'[' => open.push((Some(Segment::Index(0)), false)),
            b']' | b'}' => {
                open.pop();
            }
            b',' => match open.last_mut() {
                Some((Some(Segment::Index(n)), _)) => *n += 1,
                Some((_, expects_key)) => *expects_key = true,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    let segments: Vec<Segment> = open.into_iter().filter_map(|(s, _)| s).collect();
    render_path(root, &segments)
}

/// `root.key[3].other`, with the middle left out of a very long path.
fn render_path(root: &str, segments: &[Segment]) -> String {
    const SHOWN: usize = 8;
    let mut out = root.to_string();
    for (i, segment) in segments.iter().enumerate() {
        if segments.len() > SHOWN * 2 && i == SHOWN {
            out.push_str(&format!("…({} more)…", segments.len() - SHOWN * 2));
        }
        if segments.len() > SHOWN * 2 && (SHOWN..segments.len() - SHOWN).contains(&i) {
            continue;
        }
        match segment {
            Segment::Key(key) if out.is_empty() => out.push_str(key),
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn counts_arrays_and_objects_but_not_brackets_in_strings() {
        assert_eq!(first_too_deep(nested(3).as_bytes(), 3), None);
        assert_eq!(first_too_deep(nested(4).as_bytes(), 3), Some(3));
        let text = r#"{"a":"[[[[{{{{\"[[[[","b":[1]}"#;
        assert_eq!(first_too_deep(text.as_bytes(), 2), None);
        assert_eq!(
            first_too_deep(text.as_bytes(), 1),
            Some(text.rfind('[').unwrap())
        );
    }

    #[test]
    fn the_error_names_the_path_to_the_level_too_many() {
        let text = r#"{"model":"m","metadata":{"a":[1,{"b":{"c":{}}}]}}"#;
        let error = check_text(text.as_bytes(), 5, "").unwrap_err();
        assert_eq!(error.path, "metadata.a[1].b.c");
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            check_value(&value, 5, "").unwrap_err().path,
            "metadata.a[1].b.c"
        );
        assert!(check_value(&value, 6, "").is_ok());
        assert!(check_text(text.as_bytes(), 6, "").is_ok());
        let escaped = r#"{"k\"[":{"x":[[]]}}"#;
        assert_eq!(
            check_text(escaped.as_bytes(), 3, "body").unwrap_err().path,
            r#"body.k\"[.x[0]"#
        );
    }

    #[test]
    fn text_and_value_agree_on_depth() {
        for depth in 1..12 {
            let text = nested(depth);
            let value: Value = serde_json::from_str(&text).unwrap();
            for limit in 1..12 {
                assert_eq!(
                    check_text(text.as_bytes(), limit, "").is_ok(),
                    check_value(&value, limit, "").is_ok(),
                    "depth {depth}, limit {limit}"
                );
                assert_eq!(
                    check_text(text.as_bytes(), limit, "").is_ok(),
                    depth <= limit
                );
            }
        }
    }

    #[test]
    fn a_very_long_path_is_shortened_in_the_middle() {
        let error = check_text(nested(200).as_bytes(), MAX_JSON_DEPTH, "x").unwrap_err();
        assert!(error.path.starts_with("x[0][0]"), "{}", error.path);
        assert!(error.path.contains("more)"), "{}", error.path);
        assert!(error.path.len() < 80, "{}", error.path);
    }

    #[test]
    fn unterminated_strings_and_stray_closers_do_not_panic() {
        for text in ["\"", "\"\\", "]]]]{", "{\"a", "[\"\\\"", "}{[", ""] {
            let _ = check_text(text.as_bytes(), 1, "");
        }
    }
}
