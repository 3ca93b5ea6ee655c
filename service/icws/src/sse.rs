//! A minimal `text/event-stream` decoder: feed it chunks as they arrive, get back the `data` of
//! each completed event. Comments (`:ping`), `event:`, `id:` and `retry:` lines are ignored;
//! several `data:` lines of one event are joined with `\n` (SSE spec).

/// The longest line or event accepted; a stream sending more without a line break is broken.
const MAX_PENDING: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    /// The previous chunk ended in `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
}

#[derive(Debug, PartialEq)]
pub(crate) struct Overflow;

impl SseDecoder {
    /// Feeds one chunk; returns the data of every event completed by it.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Vec<String>, Overflow> {
        let mut events = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(data) = self.end_line(&line) {
                        events.push(data);
                    }
                }
                _ => {
                    self.line.push(b);
                    if self.line.len() + self.data.len() > MAX_PENDING {
                        return Err(Overflow);
                    }
                }
            }
        }
        Ok(events)
    }

    fn end_line(&mut self, line: &[u8]) -> Option<String> {
        if line.is_empty() {
            if !self.has_data {
                return None;
            }
            self.has_data = false;
            return Some(std::mem::take(&mut self.data));
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut d = SseDecoder::default();
        chunks.iter().flat_map(|c| d.feed(c).unwrap()).collect()
    }

    #[test]
    fn split_chunks_comments_and_multiline() {
        let out = feed_all(&[
            b":ping\n\nda",
            b"ta: {\"a\"",
            b":1}\r",
            b"\n\r\nevent: message\nid: 7\ndata: {\"b\":\ndata: 2}\n\n",
            b"data:x\r\rdata: tail",
        ]);
        assert_eq!(out, vec!["{\"a\":1}", "{\"b\":\n2}", "x"]);
    }

    #[test]
    fn field_without_colon_and_empty_events() {
        assert_eq!(feed_all(&[b"data\n\n\n\nretry: 5\n\n"]), vec![""]);
    }

    #[test]
    fn overflow_is_reported() {
        let mut d = SseDecoder::default();
        let big = vec![b'x'; MAX_PENDING + 1];
        assert_eq!(d.feed(&big), Err(Overflow));
    }
}
