//! Picks the next token from the logits: a repeat penalty over recent output, then greedy at
//! temperature 0, otherwise temperature and nucleus (top-p) sampling from a seeded generator,
//! so the same seed gives the same reply.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Candidates considered after temperature; the tail beyond them holds negligible mass.
const MAX_CANDIDATES: usize = 256;

#[derive(Clone, Debug)]
pub(crate) struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    pub repeat_penalty: f32,
    /// How many of the most recent generated tokens the penalty looks at.
    pub repeat_window: usize,
    pub seed: u64,
}

pub(crate) struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    recent: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            recent: Vec::new(),
        }
    }

    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.penalize(logits);
        let token = if self.params.temperature <= 0.0 {
            argmax(logits)
        } else {
            self.nucleus(logits)
        };
        self.recent.push(token);
        if self.recent.len() > self.params.repeat_window {
            self.recent.remove(0);
        }
        token
    }

    /// llama.cpp's rule: a seen token's positive logit is divided by the penalty, a negative
    /// one multiplied, once per distinct token.
    fn penalize(&self, logits: &mut [f32]) {
        let p = self.params.repeat_penalty;
        if p == 1.0 {
            return;
        }
        let mut seen = self.recent.clone();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l > 0.0 { *l / p } else { *l * p };
            }
        }
    }

    fn nucleus(&mut self, logits: &[f32]) -> u32 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        if idx.len() > MAX_CANDIDATES {
            idx.select_nth_unstable_by(MAX_CANDIDATES - 1, by_logit);
            idx.truncate(MAX_CANDIDATES);
        }
        idx.sort_unstable_by(by_logit);
        let max = logits[idx[0] as usize];
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| ((logits[i as usize] - max) / self.params.temperature).exp())
            .collect();
        let total: f32 = probs.iter().sum();
        let mut kept = 0;
        let mut mass = 0.0;
        for p in probs.iter_mut() {
            *p /= total;
            mass += *p;
            kept += 1;
            if mass >= self.params.top_p {
                break;
            }
        }
        let mut pick = self.rng.random::<f32>() * mass;
        for (i, p) in probs[..kept].iter().enumerate() {
            pick -= p;
            if pick <= 0.0 {
                return idx[i];
            }
        }
        idx[kept - 1]
    }
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p: 0.9,
            repeat_penalty: 1.0,
            repeat_window: 64,
            seed,
        }
    }

    #[test]
    fn temperature_zero_is_greedy() {
        let mut s = Sampler::new(params(0.0, 1));
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.9, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_choices_and_top_p_excludes_the_tail() {
        let logits: Vec<f32> = (0..1000).map(|i| if i < 3 { 10.0 } else { 0.0 }).collect();
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, seed));
            (0..50)
                .map(|_| s.sample(&mut logits.clone()))
                .collect::<Vec<_>>()
        };
        let a = draw(42);
        assert_eq!(a, draw(42));
        assert!(
            a.iter().all(|&t| t < 3),
            "only the three heavy tokens are inside top-p 0.9: {a:?}"
        );
        assert!(
            a.iter().any(|&t| t != a[0]),
            "sampling varies between the heavy tokens"
        );
    }

    #[test]
    fn repeat_penalty_demotes_recent_tokens() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            ..params(0.0, 1)
        });
        assert_eq!(s.sample(&mut [1.0, 3.0, 2.0]), 1);
        assert_eq!(s.sample(&mut [1.0, 3.0, 2.0]), 2, "3.0 / 2 falls below 2.0");
    }
}
