//! Attention keys and values kept between requests. A chat resends its whole history every
//! turn; the cache finds the stored state sharing the longest token prefix with the new prompt
//! so only the new tokens are computed. Bounded in bytes, least recently used evicted first.

/// Keys and values of one token sequence, for every layer.
pub(crate) struct KvState {
    pub tokens: Vec<u32>,
    pub layers: Vec<LayerKv>,
}

#[derive(Default)]
pub(crate) struct LayerKv {
    /// `[position][kv_head][head_dim]`
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
}

impl KvState {
    pub fn new(layers: usize) -> Self {
        KvState {
            tokens: Vec::new(),
            layers: (0..layers).map(|_| LayerKv::default()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// A copy of the first `len` tokens' state.
    fn prefix(&self, len: usize) -> KvState {
        let per_token = self
            .layers
            .first()
            .map_or(0, |l| l.keys.len() / self.tokens.len().max(1));
        KvState {
            tokens: self.tokens[..len].to_vec(),
            layers: self
                .layers
                .iter()
                .map(|l| LayerKv {
                    keys: l.keys[..len * per_token].to_vec(),
                    values: l.values[..len * per_token].to_vec(),
                })
                .collect(),
        }
    }

    fn shrink_to_fit(&mut self) {
        self.tokens.shrink_to_fit();
        for l in &mut self.layers {
            l.keys.shrink_to_fit();
            l.values.shrink_to_fit();
        }
    }

    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.keys.capacity() + l.values.capacity()) * 4)
            .sum::<usize>()
            + self.tokens.capacity() * 4
    }
}

/// The stored states, most recently used last.
pub(crate) struct PrefixCache {
    entries: Vec<KvState>,
    max_bytes: usize,
}

/// What `PrefixCache::checkout` found for a prompt.
pub(crate) struct Checkout {
    pub state: KvState,
    /// Prompt tokens whose keys and values are already in `state`.
    pub reused: usize,
}

impl PrefixCache {
    pub fn new(max_bytes: usize) -> Self {
        PrefixCache {
            entries: Vec::new(),
            max_bytes,
        }
    }

    /// The stored state sharing the longest prefix with `prompt`, cut back to that prefix (and
    /// always short of the whole prompt, since the last prompt token must be run to get
    /// logits); a fresh state when nothing matches. A conversation that simply goes on takes
    /// its state out of the cache; one that branches off (an edit, a shared system prompt) gets
    /// a copy of the shared prefix and leaves the stored state for its own continuation. The
    /// caller owns the result until `checkin`, so concurrent requests never share one.
    pub fn checkout(&mut self, prompt: &[u32], layers: usize) -> Checkout {
        let best = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt)))
            .max_by_key(|&(i, common)| (common, i));
        match best {
            Some((i, common)) if common > 0 => {
                let reused = common.min(prompt.len().saturating_sub(1));
                let state = if reused == self.entries[i].len() {
                    self.entries.remove(i)
                } else {
                    self.entries[i].prefix(reused)
                };
                Checkout { state, reused }
            }
            _ => Checkout {
                state: KvState::new(layers),
                reused: 0,
            },
        }
    }

    /// Stores `state` as the most recently used, evicting the least recently used states
    /// until the total fits the bound. A state larger than the whole bound is dropped.
    pub fn checkin(&mut self, mut state: KvState) {
        state.shrink_to_fit();
        if state.tokens.is_empty() || state.bytes() > self.max_bytes {
            return;
        }
        self.entries.push(state);
        while self.total_bytes() > self.max_bytes {
            self.entries.remove(0);
        }
    }

    fn total_bytes(&self) -> usize {
        self.entries.iter().map(KvState::bytes).sum()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(tokens: &[u32]) -> KvState {
        let mut s = KvState::new(2);
        s.tokens = tokens.to_vec();
        for l in &mut s.layers {
            l.keys = tokens.iter().flat_map(|&t| [t as f32; 4]).collect();
            l.values = l.keys.clone();
        }
        s
    }

    #[test]
    fn checkout_picks_the_longest_common_prefix_and_truncates_to_it() {
        let mut cache = PrefixCache::new(1 << 20);
        cache.checkin(state(&[1, 2, 3]));
        cache.checkin(state(&[1, 2, 3, 4, 5, 6]));
        cache.checkin(state(&[9, 9]));
        let out = cache.checkout(&[1, 2, 3, 4, 7, 8], 2);
        assert_eq!(out.reused, 4);
        assert_eq!(out.state.tokens, vec![1, 2, 3, 4]);
        assert_eq!(out.state.layers[1].keys.len(), 4 * 4);
        assert_eq!(
            cache.len(),
            3,
            "a branch copies the prefix and keeps the stored state"
        );
        let goes_on = cache.checkout(&[9, 9, 1], 2);
        assert_eq!(goes_on.reused, 2);
        assert_eq!(
            cache.len(),
            2,
            "a continuing conversation takes its state out"
        );
    }

    #[test]
    fn checkout_of_an_exact_match_leaves_the_last_prompt_token_to_compute() {
        let mut cache = PrefixCache::new(1 << 20);
        cache.checkin(state(&[1, 2, 3]));
        let out = cache.checkout(&[1, 2, 3], 2);
        assert_eq!(out.reused, 2);
        assert_eq!(out.state.tokens, vec![1, 2]);
        assert_eq!(out.state.layers[0].values, [[1.0; 4], [2.0; 4]].concat());
    }

    #[test]
    fn checkin_evicts_least_recently_used_beyond_the_byte_bound() {
        let one = state(&[1; 100]).bytes();
        let mut cache = PrefixCache::new(one * 2 + one / 2);
        cache.checkin(state(&[1; 100]));
        cache.checkin(state(&[2; 100]));
        cache.checkin(state(&[3; 100]));
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.checkout(&[1, 1], 2).reused,
            0,
            "the oldest state was evicted"
        );
        assert_eq!(cache.checkout(&[3, 3], 2).reused, 1);
    }
}
