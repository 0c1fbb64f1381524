//! A server-sent-events parser (the WHATWG "event stream" format) fed with the chunks of
//! a response body as they arrive.
//!
//! Written here rather than taken from a crate: the format is a few rules (lines end in
//! CR, LF or CRLF; `field: value`; a blank line dispatches; `:` starts a comment), the
//! well-known crate for it (`eventsource-stream`) is unmaintained since 2022 and pulls
//! in `nom` and reqwest's `stream` feature, and reqwest's `Response::chunk` is all the
//! input this needs. `id` and `retry` are read past: the Sobot stream resynchronises
//! with a fresh full message, not by `Last-Event-ID`.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `"message"` when the server named none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// What one chunk produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Event(SseEvent),
    /// An event (or one line) grew past the limit and was thrown away: a broken or
    /// hostile server must not make the client hold unbounded memory.
    Oversized {
        bytes: usize,
    },
}

#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: String,
    /// The previous chunk ended in CR: an LF starting this one belongs to it.
    after_cr: bool,
    /// At the very start of the stream, where a byte order mark is skipped.
    at_start: bool,
    max_event_bytes: usize,
    /// Dropping the rest of an oversized event until its blank line.
    discarding: bool,
    discarded: usize,
    /// Bytes of the current line while discarding (0 at a line end: a blank line).
    discard_line: usize,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: String::new(),
            after_cr: false,
            at_start: true,
            max_event_bytes: max_event_bytes.max(1),
            discarding: false,
            discarded: 0,
            discard_line: 0,
        }
    }

    /// Feeds a chunk; returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => {
                    if self.discarding {
                        self.discarded += 1;
                        self.discard_line += 1;
                    } else if self.line.len() + self.data.len() >= self.max_event_bytes {
                        self.start_discarding();
                    } else {
                        self.line.push(b);
                    }
                }
            }
        }
        out
    }

    fn start_discarding(&mut self) {
        self.discarding = true;
        self.discarded = self.line.len() + self.data.len() + 1;
        self.discard_line = 1;
        self.line.clear();
        self.data.clear();
        self.has_data = false;
        self.event.clear();
    }

    fn end_line(&mut self, out: &mut Vec<Parsed>) {
        if self.discarding {
            if self.discard_line == 0 {
                out.push(Parsed::Oversized {
                    bytes: self.discarded,
                });
                self.discarding = false;
                self.discarded = 0;
            }
            self.discard_line = 0;
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.at_start) && line.starts_with(b"\xEF\xBB\xBF") {
            // A byte order mark opening the stream (it may come split over chunks).
            line.drain(..3);
        }
        if line.is_empty() {
            if self.has_data {
                out.push(Parsed::Event(SseEvent {
                    event: if self.event.is_empty() {
                        "message".into()
                    } else {
                        std::mem::take(&mut self.event)
                    },
                    data: std::mem::take(&mut self.data),
                }));
            }
            self.has_data = false;
            self.data.clear();
            self.event.clear();
            return;
        }
        let text = String::from_utf8_lossy(&line);
        if text.starts_with(':') {
            return; // a comment (keep-alive)
        }
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            _ => {} // id, retry and unknown fields
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(p: &mut SseParser, chunks: &[&[u8]]) -> Vec<Parsed> {
        chunks.iter().flat_map(|c| p.feed(c)).collect()
    }

    fn ev(data: &str) -> Parsed {
        Parsed::Event(SseEvent {
            event: "message".into(),
            data: data.into(),
        })
    }

    #[test]
    fn events_end_at_blank_lines_whatever_the_line_endings_and_chunking() {
        let stream = b"\xEF\xBB\xBFdata: {\"a\":1}\n\n: keep-alive\r\ndata:x\r\ndata: y\r\n\r\nevent: e\rdata: z\r\r";
        for cut in 0..stream.len() {
            let mut p = SseParser::new(1 << 20);
            let got = events(&mut p, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(
                got,
                vec![
                    ev("{\"a\":1}"),
                    ev("x\ny"),
                    Parsed::Event(SseEvent {
                        event: "e".into(),
                        data: "z".into()
                    }),
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn lines_without_data_dispatch_nothing_and_unknown_fields_are_ignored() {
        let mut p = SseParser::new(1 << 20);
        let got = events(
            &mut p,
            &[b"id: 7\nretry: 100\n\nfoo: bar\n\ndata\n\n", b"data: half"],
        );
        assert_eq!(got, vec![ev("")]);
        // The half event stays until its blank line.
        assert_eq!(p.feed(b"\n\n"), vec![ev("half")]);
    }

    #[test]
    fn an_oversized_event_is_dropped_and_the_next_one_is_read() {
        let mut p = SseParser::new(16);
        let big = format!("data: {}\n\ndata: ok\n\n", "x".repeat(100));
        let got = p.feed(big.as_bytes());
        assert!(
            matches!(got[0], Parsed::Oversized { bytes } if bytes > 16),
            "{got:?}"
        );
        assert_eq!(got[1..], [ev("ok")]);
    }

    #[test]
    fn invalid_utf8_does_not_stop_the_parser() {
        let mut p = SseParser::new(1 << 20);
        let got = p.feed(b"data: \xFF\xFE\n\ndata: next\n\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], ev("next"));
    }
}
