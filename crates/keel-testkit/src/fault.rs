//! The failures a mock upstream can inject, shared by every provider's mock so that each
//! provider is tested against the same faults. A mock renders each one in its own wire format.

/// One injected failure, used in place of the next scripted reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and the provider's error body. `retry_after` is sent verbatim
    /// as `Retry-After` (delta-seconds or an HTTP-date); `retry_after_ms` as `retry-after-ms`.
    Status {
        status: u16,
        retry_after: Option<String>,
        retry_after_ms: Option<u64>,
    },
    /// Read the request, then reset the TCP connection (RST) without answering.
    ResetConnection,
    /// Read the request, then close the TCP connection (FIN) without answering.
    CloseConnection,
    /// Read the request and never send a byte back (until the mock is dropped).
    StallBeforeResponse,
    /// Stream the first `after_chunks` events of the reply, then drop the connection.
    CutStream { after_chunks: usize },
    /// Stream the first `after_chunks` events, then end the body cleanly: no finish, no end marker.
    TruncateStream { after_chunks: usize },
    /// Stream the first `after_chunks` events, then send nothing more (until the mock is dropped).
    StallStream { after_chunks: usize },
    /// Stream the first `after_chunks` events, then one event whose data is not valid JSON.
    MalformedChunk { after_chunks: usize },
    /// Stream the first `after_chunks` events, then the provider's in-stream error object for
    /// this HTTP status (e.g. 429 renders as a rate-limit error).
    ErrorInStream { after_chunks: usize, status: u16 },
    /// Answer 200 with `text/html` instead of the provider's content type.
    WrongContentType,
}

impl Fault {
    /// A bare HTTP error status.
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            retry_after: None,
            retry_after_ms: None,
        }
    }

    /// 429 with `Retry-After: <retry_after>` (seconds, or an HTTP-date).
    pub fn rate_limited(retry_after: impl Into<String>) -> Fault {
        Fault::Status {
            status: 429,
            retry_after: Some(retry_after.into()),
            retry_after_ms: None,
        }
    }
}
