//! Long-term memory records and their hybrid search, the part both backends share: a query's
//! text turned into plain terms (raw input never reaches FTS5's or PostgreSQL's query syntax),
//! the brute-force cosine ranking of stored vectors, and reciprocal-rank fusion of the keyword
//! and vector rankings. A backend ranks by its own full-text engine and hands over vectors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keel_core::{SessionId, TenantId, Timestamp};
use serde_json::Value;

use crate::StoreError;

/// Longest namespace, and most bytes of a record's text, a store takes.
pub const MAX_NAMESPACE: usize = 200;
pub const MAX_TEXT: usize = 32 << 10;

/// One remembered thing: text, metadata (a JSON object) and the text's embedding, in a
/// namespace of its tenant (`user:ada`, `agent:support`, …).
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryRecord {
    /// `mem_…`, unique within the tenant.
    pub id: String,
    pub tenant: TenantId,
    pub namespace: String,
    pub text: String,
    pub metadata: Value,
    /// Empty when the record has none (it is then found by keywords only).
    pub embedding: Vec<f32>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How keyword and vector rankings are fused — parameters, measured on a labelled set
/// (`BENCHMARKS.md`, "Memory retrieval quality"), not guessed: each list is cut at `depth`, and
/// a record's score is the sum over the lists of `weight / (k + rank)` (rank from 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fusion {
    /// Reciprocal-rank fusion's k: the larger, the less the first places outweigh the later.
    pub k: f64,
    /// How deep each ranking goes: the full-text matches read and the vectors kept.
    pub depth: usize,
    /// The weight of a place in the keyword ranking.
    pub keyword_weight: f64,
    /// The weight of a place in the vector ranking.
    pub vector_weight: f64,
    /// Whether common English words (`what`, `does`, `the`, …) are left out of the keyword
    /// query (all kept when nothing else is left). PostgreSQL's `english` configuration drops
    /// its own stop words either way.
    pub drop_stop_words: bool,
}

impl Default for Fusion {
    fn default() -> Self {
        // Chosen on the labelled set (BENCHMARKS.md, "Memory retrieval quality"): the stop
        // words of a question otherwise decide the keyword ranking, a small k keeps each list's
        // first places ahead of the other's later ones, and the vector ranking, the stronger
        // alone, weighs more.
        Fusion {
            k: 1.0,
            depth: 50,
            keyword_weight: 1.0,
            vector_weight: 1.5,
            drop_stop_words: true,
        }
    }
}

/// A search of one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryQuery {
    pub namespace: String,
    /// What a person or a model typed; keel turns it into terms itself.
    pub text: String,
    /// The text's embedding; `None` searches by keywords only.
    pub embedding: Option<Vec<f32>>,
    /// Top-level metadata keys that must equal these values.
    pub filter: Vec<(String, Value)>,
    pub limit: usize,
    pub fusion: Fusion,
}

/// A record found, its fused score, and its place in each ranking (from 1; `None`: absent).
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryHit {
    pub record: MemoryRecord,
    pub score: f64,
    pub keyword_rank: Option<usize>,
    pub vector_rank: Option<usize>,
}

/// A record as both backends store it, before it is decoded.
pub(crate) struct StoredMemory {
    pub id: String,
    pub namespace: String,
    pub text: String,
    pub metadata: String,
    pub embedding: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl StoredMemory {
    /// The record of `tenant` (whose query read it); a damaged row is `Corrupt`, naming it.
    pub(crate) fn into_record(self, tenant: &TenantId) -> Result<MemoryRecord, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("memory {}: {what}", self.id));
        let metadata = serde_json::from_str(&self.metadata)
            .map_err(|_| corrupt("its metadata is not JSON"))?;
        let embedding = vector_from_bytes(&self.embedding)
            .ok_or_else(|| corrupt("its embedding is not whole f32 values"))?;
        Ok(MemoryRecord {
            id: self.id,
            tenant: tenant.clone(),
            namespace: self.namespace,
            text: self.text,
            metadata,
            embedding,
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
        })
    }
}

impl MemoryRecord {
    /// Refuses what no store keeps: an empty or oversize namespace or text, metadata that is
    /// not an object, an embedding with a non-finite value.
    pub fn check(&self) -> Result<(), StoreError> {
        check_namespace(&self.namespace)?;
        if self.text.trim().is_empty() || self.text.len() > MAX_TEXT {
            return Err(StoreError::Invalid(format!(
                "memory {}: its text is {} bytes; give 1 to {MAX_TEXT}",
                self.id,
                self.text.len()
            )));
        }
        if !self.metadata.is_object() {
            return Err(StoreError::Invalid(format!(
                "memory {}: metadata must be a JSON object",
                self.id
            )));
        }
        if self.embedding.iter().any(|v| !v.is_finite()) {
            return Err(StoreError::Invalid(format!(
                "memory {}: its embedding holds a value that is not a finite number",
                self.id
            )));
        }
        Ok(())
    }
}

/// Refuses a record an append carries that is not of the appending session's `tenant`.
pub(crate) fn check_of_session(
    records: &[MemoryRecord],
    tenant: &str,
    session: &SessionId,
) -> Result<(), StoreError> {
    match records.iter().find(|r| r.tenant.as_str() != tenant) {
        Some(r) => Err(StoreError::Invalid(format!(
            "memory {} is not of the tenant of session {session}, which saves it",
            r.id
        ))),
        None => Ok(()),
    }
}

pub(crate) fn check_namespace(namespace: &str) -> Result<(), StoreError> {
    if namespace.is_empty() || namespace.len() > MAX_NAMESPACE {
        return Err(StoreError::Invalid(format!(
            "memory namespace {namespace:?} must be 1 to {MAX_NAMESPACE} bytes"
        )));
    }
    Ok(())
}

/// A namespace of the tenant that holds no record (never written, or emptied): searching it is
/// `NotFound`, as another tenant's is.
pub(crate) fn unknown_namespace(namespace: &str) -> StoreError {
    StoreError::NotFound {
        kind: "memory namespace",
        id: namespace.to_string(),
    }
}

/// The words of `text`, lowercased, as plain terms for a full-text engine: letters and digits
/// only, so no character of the input is ever query syntax. Repeats are dropped.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let word = word.to_lowercase();
        if !word.is_empty() && !terms.contains(&word) {
            terms.push(word);
        }
    }
    terms.truncate(64);
    terms
}

/// The little-endian bytes a vector is stored as.
pub(crate) fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A stored vector back from its bytes; `None` when the length is not whole floats.
pub(crate) fn vector_from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// Cosine similarity; 0 for vectors of different lengths or a zero vector.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let mut acc = [0f32; 3];
    for (x, y) in a.iter().zip(b) {
        acc[0] += x * y;
        acc[1] += x * x;
        acc[2] += y * y;
    }
    let norm = (acc[1] * acc[2]).sqrt();
    if norm > 0.0 { acc[0] / norm } else { 0.0 }
}

/// Keeps the `depth` most similar of `(id, vector)` to `query`, best first.
pub(crate) fn nearest(
    query: &[f32],
    candidates: impl Iterator<Item = (String, Vec<f32>)>,
    depth: usize,
) -> Vec<String> {
    let mut scored: Vec<(f32, String)> = candidates
        .filter(|(_, v)| v.len() == query.len())
        .map(|(id, v)| (cosine(query, &v), id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.truncate(depth);
    scored.into_iter().map(|(_, id)| id).collect()
}

/// Reciprocal-rank fusion of a keyword and a vector ranking (ids, best first): the `limit`
/// best ids with their score and ranks, ties broken by id.
pub(crate) fn fuse(
    keyword: &[String],
    vector: &[String],
    fusion: Fusion,
    limit: usize,
) -> Vec<Ranked> {
    let mut fused: HashMap<&str, (f64, Option<usize>, Option<usize>)> = HashMap::new();
    for (i, id) in keyword.iter().take(fusion.depth).enumerate() {
        let entry = fused.entry(id).or_default();
        entry.0 += fusion.keyword_weight / (fusion.k + (i + 1) as f64);
        entry.1 = Some(i + 1);
    }
    for (i, id) in vector.iter().take(fusion.depth).enumerate() {
        let entry = fused.entry(id).or_default();
        entry.0 += fusion.vector_weight / (fusion.k + (i + 1) as f64);
        entry.2 = Some(i + 1);
    }
    let mut ranked: Vec<Ranked> = fused
        .into_iter()
        .map(|(id, (score, k, v))| (id.to_string(), score, k, v))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(limit);
    ranked
}

/// Whether `metadata` has every `(key, value)` of `filter` at its top level.
pub(crate) fn matches(metadata: &Value, filter: &[(String, Value)]) -> bool {
    filter.iter().all(|(k, v)| metadata.get(k) == Some(v))
}

/// Whether a row's stored metadata passes the query's filter (an unreadable one does not).
fn passes(metadata: &str, query: &MemoryQuery) -> bool {
    query.filter.is_empty()
        || serde_json::from_str(metadata).is_ok_and(|m: Value| matches(&m, &query.filter))
}

/// A fused ranking entry: id, score, keyword rank, vector rank.
pub(crate) type Ranked = (String, f64, Option<usize>, Option<usize>);

/// The fused ranking of a search from what a backend read: its full-text matches as
/// `(id, metadata)`, best first (filtered by the query's metadata filter and cut at the fusion
/// depth here), and its vector ranking (`nearest_rows`, `NamespaceVectors::nearest`).
pub(crate) fn rank(
    query: &MemoryQuery,
    keyword_rows: impl IntoIterator<Item = (String, String)>,
    vector: Vec<String>,
) -> Vec<Ranked> {
    let keyword: Vec<String> = keyword_rows
        .into_iter()
        .filter(|(_, metadata)| passes(metadata, query))
        .map(|(id, _)| id)
        .take(query.fusion.depth)
        .collect();
    fuse(&keyword, &vector, query.fusion, query.limit)
}

/// How many full-text matches a backend reads: the fusion depth, or all (`None`) when a
/// metadata filter will drop some of them.
pub(crate) fn keyword_limit(query: &MemoryQuery) -> Option<i64> {
    query
        .filter
        .is_empty()
        .then(|| i64::try_from(query.fusion.depth).unwrap_or(i64::MAX))
}

/// The vector ranking from a namespace's `(id, metadata, vector bytes)` rows, read per search.
pub(crate) fn nearest_rows(
    query: &MemoryQuery,
    rows: impl IntoIterator<Item = (String, String, Vec<u8>)>,
) -> Vec<String> {
    let Some(embedding) = &query.embedding else {
        return Vec::new();
    };
    nearest(
        embedding,
        rows.into_iter().filter_map(|(id, metadata, bytes)| {
            let vector = vector_from_bytes(&bytes)?;
            passes(&metadata, query).then_some((id, vector))
        }),
        query.fusion.depth,
    )
}

/// A namespace's vectors held in memory — ids, stored metadata, one contiguous buffer of unit
/// vectors — so a search scans floats rather than rows.
pub(crate) struct NamespaceVectors {
    ids: Vec<String>,
    metadata: Vec<String>,
    dimensions: Vec<usize>,
    /// Row `i` at `offsets[i]..offsets[i] + dimensions[i]`, scaled to unit length.
    offsets: Vec<usize>,
    values: Vec<f32>,
}

impl NamespaceVectors {
    fn load(rows: impl IntoIterator<Item = (String, String, Vec<u8>)>) -> Self {
        let mut space = NamespaceVectors {
            ids: Vec::new(),
            metadata: Vec::new(),
            dimensions: Vec::new(),
            offsets: Vec::new(),
            values: Vec::new(),
        };
        for (id, metadata, bytes) in rows {
            let Some(mut vector) = vector_from_bytes(&bytes).filter(|v| !v.is_empty()) else {
                continue;
            };
            let norm = dot(&vector, &vector).sqrt();
            if norm > 0.0 {
                vector.iter_mut().for_each(|v| *v /= norm);
            }
            space.ids.push(id);
            space.metadata.push(metadata);
            space.dimensions.push(vector.len());
            space.offsets.push(space.values.len());
            space.values.extend_from_slice(&vector);
        }
        space
    }

    /// The ids of the `query.fusion.depth` vectors nearest the query's embedding, best first.
    pub(crate) fn nearest(&self, query: &MemoryQuery) -> Vec<String> {
        let Some(embedding) = &query.embedding else {
            return Vec::new();
        };
        let norm = dot(embedding, embedding).sqrt();
        if norm == 0.0 {
            return Vec::new();
        }
        let mut scored: Vec<(f32, usize)> = Vec::new();
        for (i, &dimensions) in self.dimensions.iter().enumerate() {
            if dimensions != embedding.len() || !passes(&self.metadata[i], query) {
                continue;
            }
            let at = self.offsets[i];
            scored.push((dot(embedding, &self.values[at..at + dimensions]) / norm, i));
        }
        let depth = query.fusion.depth.min(scored.len());
        let by_score = |a: &(f32, usize), b: &(f32, usize)| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.ids[a.1].cmp(&self.ids[b.1]))
        };
        if depth < scored.len() {
            scored.select_nth_unstable_by(depth, by_score);
            scored.truncate(depth);
        }
        scored.sort_by(by_score);
        scored
            .into_iter()
            .map(|(_, i)| self.ids[i].clone())
            .collect()
    }
}

/// The namespaces' vectors a store holds in memory, loaded by the first search of each and
/// dropped whole at every write to the tenant's memory. A load that raced a write is not kept
/// (`generation`), so a search never sees vectors older than the last write it follows.
#[derive(Default)]
pub(crate) struct VectorCache {
    spaces: Mutex<HashMap<(String, String), Arc<NamespaceVectors>>>,
    generation: AtomicU64,
}

impl VectorCache {
    /// The namespace's vectors, read with `load` when not held.
    pub(crate) fn get_or_load(
        &self,
        tenant: &TenantId,
        namespace: &str,
        load: impl FnOnce() -> Result<Vec<(String, String, Vec<u8>)>, StoreError>,
    ) -> Result<Arc<NamespaceVectors>, StoreError> {
        let key = (tenant.as_str().to_string(), namespace.to_string());
        if let Some(space) = self.lock().get(&key) {
            return Ok(space.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let space = Arc::new(NamespaceVectors::load(load()?));
        let mut spaces = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            spaces.insert(key, space.clone());
        }
        Ok(space)
    }

    /// Drops what is held of the tenant's namespaces: called after each write to its memory.
    pub(crate) fn forget_tenant(&self, tenant: &TenantId) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.lock().retain(|(t, _), _| t != tenant.as_str());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<NamespaceVectors>>> {
        self.spaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A dot product in eight lanes, so the compiler vectorizes it without reassociation flags.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The full-text expression of a query for FTS5 (`"a" OR "b"`) or PostgreSQL's `to_tsquery`
/// (`a | b`): its terms (`keyword_terms`), each letters and digits only, so none of the input
/// is query syntax. `None` when the text has no terms.
pub(crate) fn any_of(query: &MemoryQuery, quote: bool, or: &str) -> Option<String> {
    let terms = keyword_terms(&query.text, query.fusion.drop_stop_words);
    if terms.is_empty() {
        return None;
    }
    let terms: Vec<String> = terms
        .into_iter()
        .map(|t| if quote { format!("\"{t}\"") } else { t })
        .collect();
    Some(terms.join(or))
}

/// The terms a keyword search asks for: `query_terms`, less the stop words when `drop_stop_words`
/// and any other term is left.
pub fn keyword_terms(text: &str, drop_stop_words: bool) -> Vec<String> {
    let terms = query_terms(text);
    if !drop_stop_words {
        return terms;
    }
    let kept: Vec<String> = terms
        .iter()
        .filter(|t| STOP_WORDS.binary_search(&t.as_str()).is_err())
        .cloned()
        .collect();
    if kept.is_empty() { terms } else { kept }
}

/// Common English words that say little about what a text is about (NLTK's English list, as
/// `query_terms` splits it: `don't` is `don` and `t`), sorted for a binary search.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "ain", "all", "am", "an", "and", "any",
    "are", "aren", "as", "at", "be", "because", "been", "before", "being", "below", "between",
    "both", "but", "by", "can", "couldn", "d", "did", "didn", "do", "does", "doesn", "doing",
    "don", "down", "during", "each", "few", "for", "from", "further", "had", "hadn", "has",
    "hasn", "have", "haven", "having", "he", "her", "here", "hers", "herself", "him", "himself",
    "his", "how", "i", "if", "in", "into", "is", "isn", "it", "its", "itself", "just", "ll", "m",
    "ma", "me", "mightn", "more", "most", "mustn", "my", "myself", "needn", "no", "nor", "not",
    "now", "o", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves",
    "out", "over", "own", "re", "s", "same", "shan", "she", "should", "shouldn", "so", "some",
    "such", "t", "than", "that", "the", "their", "theirs", "them", "themselves", "then",
    "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up",
    "ve", "very", "was", "wasn", "we", "were", "weren", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "won", "wouldn", "y", "you", "your", "yours",
    "yourself", "yourselves",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_text_becomes_plain_terms_whatever_it_holds() {
        assert_eq!(
            query_terms("What's \"Ada's\" NEAR(deadline)? col:val -x OR *"),
            [
                "what", "s", "ada", "near", "deadline", "col", "val", "x", "or"
            ]
        );
        assert!(query_terms("?!\"'*:()").is_empty());
        for term in query_terms("It's a \"quoted\" (question): yes?") {
            assert!(term.chars().all(char::is_alphanumeric), "{term}");
        }
    }

    #[test]
    fn stop_words_are_dropped_only_when_asked_and_never_all() {
        assert!(
            STOP_WORDS.windows(2).all(|w| w[0] < w[1]),
            "sorted, no repeats"
        );
        let question = "What's the name of Ada's pet?";
        assert_eq!(
            keyword_terms(question, false),
            ["what", "s", "the", "name", "of", "ada", "pet"]
        );
        assert_eq!(keyword_terms(question, true), ["name", "ada", "pet"]);
        assert_eq!(keyword_terms("Who is it?", true), ["who", "is", "it"]);
    }

    #[test]
    fn a_weighted_list_outranks_the_other() {
        let ids = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (keyword, vector) = (ids(&["k"]), ids(&["v"]));
        let top = |keyword_weight, vector_weight| {
            let fusion = Fusion {
                keyword_weight,
                vector_weight,
                ..Fusion::default()
            };
            fuse(&keyword, &vector, fusion, 1)[0].0.clone()
        };
        assert_eq!(top(1.0, 2.0), "v");
        assert_eq!(top(2.0, 1.0), "k");
    }

    #[test]
    fn fusion_rewards_agreement_and_keeps_either_list() {
        let ids = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let fused = fuse(
            &ids(&["a", "b", "c"]),
            &ids(&["c", "d", "a"]),
            Fusion {
                k: 60.0,
                vector_weight: 1.0,
                ..Fusion::default()
            },
            10,
        );
        let order: Vec<&str> = fused.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            order[0], "a",
            "first and third beats either alone: {fused:?}"
        );
        assert_eq!(order[1], "c");
        assert_eq!(order.len(), 4);
        let d = fused.iter().find(|f| f.0 == "d").unwrap();
        assert_eq!((d.2, d.3), (None, Some(2)));
    }

    #[test]
    fn cached_vectors_rank_like_rows_and_a_write_drops_them() {
        let rows = || {
            vec![
                (
                    "far".to_string(),
                    "{}".to_string(),
                    vector_bytes(&[0.0, 2.0]),
                ),
                (
                    "near".to_string(),
                    "{}".to_string(),
                    vector_bytes(&[3.0, 0.3]),
                ),
                ("none".to_string(), "{}".to_string(), Vec::new()),
            ]
        };
        let query = MemoryQuery {
            namespace: "ns".into(),
            text: String::new(),
            embedding: Some(vec![1.0, 0.0]),
            filter: Vec::new(),
            limit: 5,
            fusion: Fusion::default(),
        };
        let cache = VectorCache::default();
        let tenant = TenantId::default_tenant();
        let space = cache.get_or_load(&tenant, "ns", || Ok(rows())).unwrap();
        assert_eq!(space.nearest(&query), nearest_rows(&query, rows()));
        assert_eq!(space.nearest(&query), ["near", "far"]);
        let again = cache.get_or_load(&tenant, "ns", || panic!("held")).unwrap();
        assert!(Arc::ptr_eq(&space, &again));
        cache.forget_tenant(&tenant);
        let reloaded = cache.get_or_load(&tenant, "ns", || Ok(Vec::new())).unwrap();
        assert!(
            reloaded.nearest(&query).is_empty(),
            "read again after the write"
        );
    }

    #[test]
    fn vectors_round_trip_and_rank_by_cosine() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(vector_from_bytes(&vector_bytes(&v)), Some(v.clone()));
        assert_eq!(vector_from_bytes(&[1, 2, 3]), None);
        let found = nearest(
            &[1.0, 0.0],
            [
                ("far".to_string(), vec![0.0, 1.0]),
                ("near".to_string(), vec![0.9, 0.1]),
                ("wrong-size".to_string(), vec![1.0]),
            ]
            .into_iter(),
            5,
        );
        assert_eq!(found, ["near", "far"]);
    }
}
