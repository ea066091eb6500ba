//! Incremental decoder for `Transfer-Encoding: chunked` request bodies.
//!
//! Fed whatever bytes have arrived, it consumes what it can and says how
//! far it got, so a body trickling in is decoded once, not re-parsed from
//! the start on every read.

/// Why a chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChunkError {
    /// The chunk-size line is not hex digits (with optional extensions).
    BadSize,
    /// A chunk's data is not followed by CRLF.
    MissingCrlf,
    /// The decoded body would exceed the limit.
    TooLarge,
    /// The chunk-size line or the trailer section is too long.
    LineTooLong,
    /// The framing (size lines, extensions, CRLFs, trailers) outweighs its
    /// allowance: many tiny chunks with long extensions would otherwise
    /// make the server buffer far more than `max_body` for one request.
    TooMuchFraming,
}

impl ChunkError {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            ChunkError::BadSize => "invalid chunk size line in chunked body",
            ChunkError::MissingCrlf => "chunk data not followed by CRLF in chunked body",
            ChunkError::TooLarge => "request body too large",
            ChunkError::LineTooLong => "chunk size line or trailer section too long",
            ChunkError::TooMuchFraming => {
                "chunked body has too much framing (chunk size lines, extensions, trailers) for its data"
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Longest chunk-size line (with extensions) accepted.
const MAX_SIZE_LINE: usize = 1024;

/// What one chunked body may cost, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkLimits {
    /// The decoded body.
    pub(crate) max_body: usize,
    /// The trailer section.
    pub(crate) max_trailers: usize,
    /// Every byte that is not body data (size lines, extensions, CRLFs,
    /// trailers), so the raw bytes of one chunked body stay within
    /// `max_body + max_framing`.
    pub(crate) max_framing: usize,
}

pub(crate) struct Decoder {
    state: State,
    limits: ChunkLimits,
    trailer_bytes: usize,
    /// Bytes consumed that were not body data.
    framing_bytes: usize,
}

impl Decoder {
    pub(crate) fn new(limits: ChunkLimits) -> Self {
        Decoder {
            state: State::Size,
            limits,
            trailer_bytes: 0,
            framing_bytes: 0,
        }
    }

    /// Decodes from `input`, appending data to `body`. Returns how many
    /// bytes of `input` were consumed and whether the body is complete
    /// (the last chunk and the trailer section have been read).
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<(usize, bool), ChunkError> {
        let before = body.len();
        let (used, done) = self.decode(input, body)?;
        let data = body.len() - before;
        self.framing_bytes = self.framing_bytes.saturating_add(used - data);
        if self.framing_bytes > self.limits.max_framing {
            return Err(ChunkError::TooMuchFraming);
        }
        Ok((used, done))
    }

    fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<(usize, bool), ChunkError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return Ok((pos, true)),
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        pos += used;
                        if size == 0 {
                            self.state = State::Trailers;
                        } else {
                            let total = (body.len() as u64).saturating_add(size);
                            if total > self.limits.max_body as u64 {
                                return Err(ChunkError::TooLarge);
                            }
                            self.state = State::Data(size);
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        if rest.len() > MAX_SIZE_LINE {
                            return Err(ChunkError::LineTooLong);
                        }
                        return Ok((pos, false));
                    }
                    Err(_) => return Err(ChunkError::BadSize),
                },
                State::Data(remaining) => {
                    if rest.is_empty() {
                        return Ok((pos, false));
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    body.extend_from_slice(&rest[..take]);
                    pos += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => return Ok((pos, false)),
                    _ => return Err(ChunkError::MissingCrlf),
                },
                State::Trailers => {
                    // Trailer fields are read and discarded: nothing in
                    // this project needs them.
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        if self.trailer_bytes + rest.len() > self.limits.max_trailers {
                            return Err(ChunkError::LineTooLong);
                        }
                        return Ok((pos, false));
                    };
                    let line = &rest[..nl];
                    pos += nl + 1;
                    self.trailer_bytes += nl + 1;
                    if self.trailer_bytes > self.limits.max_trailers {
                        return Err(ChunkError::LineTooLong);
                    }
                    if line.is_empty() || line == b"\r" {
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_body: usize) -> ChunkLimits {
        ChunkLimits {
            max_body,
            max_trailers: 1024,
            max_framing: 1024,
        }
    }

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<Vec<u8>, ChunkError> {
        let mut d = Decoder::new(limits(1024));
        let mut body = Vec::new();
        let mut buf = Vec::new();
        for part in input.chunks(piece) {
            buf.extend_from_slice(part);
            let (used, done) = d.feed(&buf, &mut body)?;
            buf.drain(..used);
            if done {
                return Ok(body);
            }
        }
        Err(ChunkError::MissingCrlf)
    }

    #[test]
    fn decodes_whole_and_byte_by_byte() {
        let wire = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for piece in [1, 2, 3, 7, wire.len()] {
            assert_eq!(decode_in_pieces(wire, piece).unwrap(), b"Wikipedia");
        }
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(decode_in_pieces(b"zz\r\n", 64), Err(ChunkError::BadSize));
        assert_eq!(
            decode_in_pieces(b"2\r\nabX\r\n0\r\n\r\n", 64),
            Err(ChunkError::MissingCrlf)
        );
        let mut d = Decoder::new(limits(4));
        assert_eq!(d.feed(b"5\r\n", &mut Vec::new()), Err(ChunkError::TooLarge));
    }

    #[test]
    fn framing_is_bounded_not_only_the_data() {
        // One data byte per chunk, each behind a 600-byte extension: the
        // decoded body is tiny but the raw bytes are not.
        let chunk = format!("1;{}\r\nx\r\n", "e".repeat(600));
        let wire = format!("{}0\r\n\r\n", chunk.repeat(4));
        let mut d = Decoder::new(limits(1024));
        let mut body = Vec::new();
        assert_eq!(
            d.feed(wire.as_bytes(), &mut body),
            Err(ChunkError::TooMuchFraming)
        );
        // Within the allowance the same shape decodes.
        let wire = format!("{}0\r\n\r\n", chunk);
        let mut d = Decoder::new(limits(1024));
        let mut body = Vec::new();
        assert_eq!(d.feed(wire.as_bytes(), &mut body), Ok((wire.len(), true)));
        assert_eq!(body, b"x");
    }
}
