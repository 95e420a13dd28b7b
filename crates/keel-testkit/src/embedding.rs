//! The vectors every mock upstream answers an embeddings request with: deterministic, a
//! function of the text alone (hashed words, signed, unit length), so texts sharing words are
//! close and a test can compute what any provider must have returned.

/// The dimensions a mock embeds into unless the request asks for fewer.
pub const MOCK_DIMENSIONS: usize = 64;

/// The mock embedding of `text` in `dimensions` dimensions.
pub fn mock_vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0f32; dimensions.max(1)];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let hash = fnv1a(&word.to_lowercase());
        let slot = (hash % vector.len() as u64) as usize;
        vector[slot] += if hash >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

/// The tokens a mock counts for `text`: its words.
pub fn mock_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
