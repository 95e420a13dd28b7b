//! Time to first token of streamed completions: from sending the request to the first chunk
//! whose `delta.content` is not empty (keel's leading role chunk does not count), read by a
//! small reqwest client that then drains the stream so its connection is reused.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

/// One target of the measurement.
pub struct Target {
    pub url: String,
    pub body: String,
    pub auth: Option<String>,
}

/// TTFT of `requests` streamed calls, `concurrency` at a time. Each of the `concurrency`
/// loops starts `spread / concurrency` after the one before: with `spread` zero they all start
/// at once (and, the upstream's delay being fixed, stay in step: every reply arrives in the
/// same instant); spread over one upstream delay, they are independent callers.
pub async fn measure(
    client: &reqwest::Client,
    target: &Target,
    requests: usize,
    concurrency: usize,
    spread: Duration,
) -> Vec<Duration> {
    let concurrency = concurrency.max(1);
    let per_task = requests.div_ceil(concurrency);
    let tasks = (0..concurrency).map(|i| async move {
        tokio::time::sleep(spread * i as u32 / concurrency as u32).await;
        let mut times = Vec::with_capacity(per_task);
        for _ in 0..per_task {
            times.push(first_token(client, target).await);
        }
        times
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn first_token(client: &reqwest::Client, target: &Target) -> Duration {
    let started = Instant::now();
    let mut request = client
        .post(&target.url)
        .header("content-type", "application/json")
        .body(target.body.clone());
    if let Some(key) = &target.auth {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("streamed request failed");
    assert!(
        response.status().is_success(),
        "{} answered {}",
        target.url,
        response.status()
    );
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut first = None;
    while let Some(bytes) = body.next().await {
        let bytes = bytes.expect("the stream broke off");
        if first.is_some() {
            continue;
        }
        buffer.extend_from_slice(&bytes);
        while let Some(end) = find(&buffer, b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            if has_content(&event) {
                first = Some(started.elapsed());
                break;
            }
        }
    }
    first.unwrap_or_else(|| panic!("{}: the stream carried no content", target.url))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether an SSE event is a chunk with text in `choices[0].delta.content`.
fn has_content(event: &[u8]) -> bool {
    let text = String::from_utf8_lossy(event);
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .any(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
}
