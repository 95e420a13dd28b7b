//! The tokenizer, built from the GGUF file's own vocabulary and merges (no tokenizer.json and
//! no network): byte-level BPE with digits split one by one and no prefix space, which is
//! SmolLM2's scheme. Control tokens are only recognised where the caller allows them.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

use crate::error::LocalError;
use crate::gguf::{GgufFile, MetaValue};

/// GGUF token types that are not text.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Text the BPE model could not encode (it names the reason).
#[derive(Debug, thiserror::Error)]
#[error("cannot tokenize the text: {0}")]
pub struct TokenizeError(String);

pub struct Tokenizer {
    bpe: tokenizers::Tokenizer,
    /// Control tokens by their literal text, longest first.
    specials: Vec<(String, u32)>,
    /// The bytes each token stands for; empty for control tokens.
    token_bytes: Vec<Vec<u8>>,
    by_text: HashMap<String, u32>,
}

impl Tokenizer {
    pub(crate) fn from_gguf(gguf: &GgufFile) -> Result<Self, LocalError> {
        let err = |reason: String| LocalError::Tokenizer {
            path: gguf.path().to_path_buf(),
            reason,
        };
        let model = gguf.meta_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(err(format!(
                "tokenizer model `{model}` (keel builds byte-level BPE, `gpt2`, tokenizers)"
            )));
        }
        let tokens = strings(gguf, "tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match gguf.metadata.get("tokenizer.ggml.token_type") {
            Some(MetaValue::Array(a)) => a
                .iter()
                .map(|v| if let MetaValue::Int(i) = v { *i } else { 1 })
                .collect(),
            _ => vec![1; tokens.len()],
        };
        let merges = strings(gguf, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| err(format!("bad merge `{m}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut vocab: HashMap<String, u32, ahash::RandomState> = HashMap::default();
        let mut specials = Vec::new();
        let unicode_to_byte = byte_level_alphabet();
        let mut token_bytes = Vec::with_capacity(tokens.len());
        for (id, text) in tokens.iter().enumerate() {
            vocab.insert(text.clone(), id as u32);
            let ty = types.get(id).copied().unwrap_or(1);
            if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
                specials.push((text.clone(), id as u32));
                token_bytes.push(Vec::new());
            } else {
                token_bytes.push(
                    text.chars()
                        .flat_map(|ch| match unicode_to_byte.get(&ch) {
                            Some(&b) => vec![b],
                            None => ch.to_string().into_bytes(),
                        })
                        .collect(),
                );
            }
        }
        specials.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
        let by_text = vocab.iter().map(|(k, v)| (k.clone(), *v)).collect();

        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let mut tokenizer = tokenizers::Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        Ok(Tokenizer {
            bpe: tokenizer,
            specials,
            token_bytes,
            by_text,
        })
    }

    /// Loads just the tokenizer of a GGUF file.
    pub fn load(path: &Path) -> Result<Self, LocalError> {
        Self::from_gguf(&GgufFile::open(path)?)
    }

    /// Token ids of `text`. With `allow_special`, control-token literals in the text (such as
    /// `<|im_start|>`) become their ids; without it they are tokenized as plain text, which is
    /// how user content is encoded so that it cannot forge a turn.
    pub fn encode(&self, text: &str, allow_special: bool) -> Result<Vec<u32>, TokenizeError> {
        let mut ids = Vec::new();
        let mut rest = text;
        if allow_special {
            while let Some((at, text_len, id)) = self.find_special(rest) {
                self.encode_plain(&rest[..at], &mut ids)?;
                ids.push(id);
                rest = &rest[at + text_len..];
            }
        }
        self.encode_plain(rest, &mut ids)?;
        Ok(ids)
    }

    fn find_special(&self, text: &str) -> Option<(usize, usize, u32)> {
        self.specials
            .iter()
            .filter_map(|(s, id)| text.find(s.as_str()).map(|at| (at, s.len(), *id)))
            .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)))
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizeError> {
        if text.is_empty() {
            return Ok(());
        }
        let encoding = self
            .bpe
            .encode(text, false)
            .map_err(|e| TokenizeError(e.to_string()))?;
        ids.extend_from_slice(encoding.get_ids());
        Ok(())
    }

    /// The bytes token `id` stands for (empty for control tokens and unknown ids). A token can
    /// hold part of a UTF-8 character: see `Utf8Assembler`.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The text of a whole token sequence (control tokens left out).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The id of a token given its exact vocabulary text (e.g. `<|im_end|>`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.by_text.get(text).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }
}

fn strings(gguf: &GgufFile, key: &str) -> Result<Vec<String>, LocalError> {
    gguf.meta_array(key)?
        .iter()
        .map(|v| match v {
            MetaValue::Str(s) => Ok(s.clone()),
            other => Err(LocalError::corrupt(
                gguf.path(),
                format!("{key} holds a non-string {other:?}"),
            )),
        })
        .collect()
}

/// GPT-2's byte-level alphabet, inverted: each printable stand-in char to the byte it encodes.
fn byte_level_alphabet() -> HashMap<char, u8> {
    let printable = |b: u8| {
        (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut map = HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let ch = if printable(b) {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        map.insert(char::from_u32(ch).unwrap_or('\u{fffd}'), b);
    }
    map
}

/// Turns a stream of token bytes into text without ever splitting a UTF-8 character: an
/// incomplete sequence at the end is held until the next token completes it.
#[derive(Default)]
pub(crate) struct Utf8Assembler {
    pending: Vec<u8>,
}

impl Utf8Assembler {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix was just validated.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{fffd}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is still held at the end of the stream, as replacement characters.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_assembler_holds_a_split_character_until_it_is_complete() {
        let mut a = Utf8Assembler::default();
        let euro = "€".as_bytes();
        assert_eq!(a.push(b"price "), "price ");
        assert_eq!(a.push(&euro[..1]), "");
        assert_eq!(a.push(&euro[1..2]), "");
        assert_eq!(a.push(&[euro[2], b'5']), "€5");
        assert_eq!(a.push(&[0xff, b'x']), "\u{fffd}x");
        assert_eq!(a.push(&euro[..2]), "");
        assert_eq!(a.finish(), "\u{fffd}");
    }

    #[test]
    fn byte_level_alphabet_covers_every_byte_once() {
        let map = byte_level_alphabet();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'a'], b'a');
    }
}
