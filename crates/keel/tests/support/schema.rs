//! A small JSON Schema checker for the schemas keel checks in under `docs/`: the keywords they
//! use (`type`, `required`, `properties`, `additionalProperties: false`, `const`, `enum`,
//! `oneOf`, `items`, `minimum`, local `$ref`s); `pattern`, `format` and the texts are
//! annotations here. A keyword it does not know fails, so a schema never says more than is checked.

use serde_json::Value;

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$defs",
    "title",
    "description",
    "format",
    "pattern",
];

/// Why `value` does not follow `schema` (the document `root` resolves `$ref`s), or `None`.
pub fn violation(root: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    let object = schema.as_object().expect("a schema is an object");
    for (keyword, rule) in object {
        let problem = match keyword.as_str() {
            k if ANNOTATIONS.contains(&k) => None,
            "$ref" => {
                let pointer = rule.as_str().unwrap().trim_start_matches('#');
                let target = root.pointer(pointer).expect("a $ref within the schema");
                violation(root, target, value, at)
            }
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::Array(many) => many.iter().map(|t| t.as_str().unwrap()).collect(),
                    one => vec![one.as_str().unwrap()],
                };
                (!types.iter().any(|t| is_type(value, t)))
                    .then(|| format!("{at}: {value} is not of type {types:?}"))
            }
            "const" => (value != rule).then(|| format!("{at}: {value} is not {rule}")),
            "enum" => (!rule.as_array().unwrap().contains(value))
                .then(|| format!("{at}: {value} is not one of {rule}")),
            "minimum" => value
                .as_f64()
                .filter(|n| *n < rule.as_f64().unwrap())
                .map(|n| format!("{at}: {n} is below {rule}")),
            "required" => value.as_object().and_then(|fields| {
                rule.as_array()
                    .unwrap()
                    .iter()
                    .map(|name| name.as_str().unwrap())
                    .find(|name| !fields.contains_key(*name))
                    .map(|name| format!("{at}: lacks {name:?}"))
            }),
            "properties" => value.as_object().and_then(|fields| {
                fields.iter().find_map(|(name, field)| {
                    let rule = rule.get(name)?;
                    violation(root, rule, field, &format!("{at}.{name}"))
                })
            }),
            "additionalProperties" => {
                assert_eq!(rule, &Value::Bool(false), "only `false` is checked");
                let known = object.get("properties").and_then(Value::as_object);
                value.as_object().and_then(|fields| {
                    fields
                        .keys()
                        .find(|name| !known.is_some_and(|k| k.contains_key(*name)))
                        .map(|name| format!("{at}: {name:?} is not allowed"))
                })
            }
            "items" => value.as_array().and_then(|items| {
                items
                    .iter()
                    .enumerate()
                    .find_map(|(i, item)| violation(root, rule, item, &format!("{at}[{i}]")))
            }),
            "oneOf" => {
                let results: Vec<Option<String>> = rule
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|choice| violation(root, choice, value, at))
                    .collect();
                match results.iter().filter(|r| r.is_none()).count() {
                    1 => None,
                    0 => Some(format!("{at}: matches none of oneOf: {results:?}")),
                    n => Some(format!("{at}: matches {n} of oneOf")),
                }
            }
            other => panic!("the schema uses {other:?}, which this checker does not know"),
        };
        if problem.is_some() {
            return problem;
        }
    }
    None
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other:?}"),
    }
}
