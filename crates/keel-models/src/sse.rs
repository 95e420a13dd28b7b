//! A Server-Sent Events decoder, as the WHATWG spec defines the format: every provider that
//! streams over SSE feeds it raw body bytes and gets whole events back. Handles LF, CRLF and CR
//! line ends (even split across reads), multi-line `data:`, comments, `event:` and a leading BOM.

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any (`message` is the spec's default and is reported as `None`).
    pub event: Option<String>,
    /// All `data:` lines of the event, joined with `\n`.
    pub data: String,
    pub id: Option<String>,
}

/// Incremental decoder: push bytes as they arrive, take the events they complete.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of an unfinished line.
    line: Vec<u8>,
    /// The previous read ended in `\r`; a `\n` opening the next one belongs to that line end.
    after_cr: bool,
    /// A line was completed already (a BOM may only open the first one).
    past_first_line: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Feeds bytes and returns the events they complete, in order. Whole lines are decoded
    /// straight from `bytes`; only a line cut by the end of a read is copied, into a buffer
    /// kept (with its capacity) from line to line.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', rest) {
            let (line, tail) = rest.split_at(end);
            let event = if self.line.is_empty() {
                self.take_first_or_later_line(line)
            } else {
                let mut buffered = std::mem::take(&mut self.line);
                buffered.extend_from_slice(line);
                let event = self.take_first_or_later_line(&buffered);
                buffered.clear();
                self.line = buffered;
                event
            };
            events.extend(event);
            rest = &tail[1..];
            if tail[0] == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.line.extend_from_slice(rest);
        events
    }

    /// A complete line; a BOM may only open the first one.
    fn take_first_or_later_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        let line = match std::mem::replace(&mut self.past_first_line, true) {
            false => line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line),
            true => line,
        };
        self.take_line(line)
    }

    /// Whether bytes of an unfinished event are buffered (so the stream ended mid-event).
    pub fn has_partial_event(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn take_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        // Splitting only at CR/LF never cuts a UTF-8 sequence, so each line decodes whole.
        // `from_utf8` first: its ASCII fast path is several times quicker than the lossy scan.
        let line = match std::str::from_utf8(line) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(line),
        };
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => tracing::trace!(field, "sse: ignoring unknown field"),
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self
            .event
            .take()
            .filter(|e| !e.is_empty() && e != "message");
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_of(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn decodes_lf_crlf_and_cr_line_ends() {
        for input in [
            "data: a\n\ndata: b\n\n",
            "data: a\r\n\r\ndata: b\r\n\r\n",
            "data: a\r\rdata: b\r\r",
        ] {
            let events = SseDecoder::new().push(input.as_bytes());
            assert_eq!(data_of(&events), ["a", "b"], "input {input:?}");
        }
    }

    #[test]
    fn crlf_split_across_reads_is_one_line_end() {
        let mut decoder = SseDecoder::new();
        let mut events = decoder.push(b"data: a\r");
        events.extend(decoder.push(b"\n\r"));
        events.extend(decoder.push(b"\ndata: b\r\n\r\n"));
        assert_eq!(data_of(&events), ["a", "b"]);
    }

    #[test]
    fn joins_multi_line_data_and_skips_comments() {
        let input = ": keep-alive\nevent: update\ndata: first\ndata:second\nid: 7\n\n";
        let events = SseDecoder::new().push(input.as_bytes());
        assert_eq!(
            events,
            [SseEvent {
                event: Some("update".into()),
                data: "first\nsecond".into(),
                id: Some("7".into())
            }]
        );
    }

    #[test]
    fn byte_at_a_time_gives_the_same_events_as_one_read() {
        let input = "\u{FEFF}data: {\"a\": \"é\"}\r\n\r\n: c\n\nevent: x\ndata: [DONE]\n\n";
        let whole = SseDecoder::new().push(input.as_bytes());
        let mut decoder = SseDecoder::new();
        let pieces: Vec<SseEvent> = input
            .as_bytes()
            .iter()
            .flat_map(|b| decoder.push(&[*b]))
            .collect();
        assert_eq!(whole, pieces);
        assert_eq!(data_of(&whole), ["{\"a\": \"é\"}", "[DONE]"]);
    }

    #[test]
    fn every_split_into_two_reads_gives_the_same_events() {
        let input =
            "\u{FEFF}data: one\r\n\r\ndata: two\rdata: more\r\r: c\n\nid: 3\ndata: [DONE]\n\n";
        let whole = SseDecoder::new().push(input.as_bytes());
        assert_eq!(data_of(&whole), ["one", "two\nmore", "[DONE]"]);
        for split in 0..=input.len() {
            let mut decoder = SseDecoder::new();
            let mut events = decoder.push(&input.as_bytes()[..split]);
            events.extend(decoder.push(b""));
            events.extend(decoder.push(&input.as_bytes()[split..]));
            assert_eq!(events, whole, "split at byte {split}");
        }
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_a_partial_one_is_reported() {
        let mut decoder = SseDecoder::new();
        assert!(decoder.push(b"event: ping\n\n").is_empty());
        assert!(!decoder.has_partial_event());
        assert!(decoder.push(b"data: half").is_empty());
        assert!(decoder.has_partial_event());
    }
}
