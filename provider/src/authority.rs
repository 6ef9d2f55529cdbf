//! Accepting the `:authority` that drivers before v1.6 send over unix sockets.
//!
//! Those drivers (and grpc clients of other languages) send the socket path, e.g.
//! `/var/run/secrets-store-csi-providers/courier.sock`, as the HTTP/2 `:authority`.
//! That is not a valid authority, and the Rust HTTP/2 server rejects every such
//! request with PROTOCOL_ERROR and offers no switch to relax it.
//!
//! [`AuthorityFix`] sits between the socket and the HTTP/2 server and reads the
//! client's first header block. When its `:authority` is valid (drivers from v1.6
//! send `localhost`), the connection is passed through untouched from then on.
//! Otherwise every header block of that connection is decoded (HPACK, mirroring the
//! client's compression state) and re-encoded with a compressor whose state the
//! server mirrors, with the invalid authority replaced by `localhost`. Only the
//! client-to-server direction is inspected; replies pass through unchanged.
//!
//! Memory is bounded before any work: a frame longer than the server's
//! SETTINGS_MAX_FRAME_SIZE is never waited for, and a header block is buffered only
//! up to [`MAX_HEADER_BLOCK`] bytes, [`MAX_CONTINUATIONS`] CONTINUATION frames and
//! a decoded size of [`MAX_HEADER_LIST_SIZE`]. Input over any of these is handed
//! to the HTTP/2 server exactly as the client sent it, and the adapter steps
//! aside: the server's own limits (which are tighter) answer it with the GOAWAY
//! HTTP/2 prescribes (FRAME_SIZE_ERROR for the frame, ENHANCE_YOUR_CALM for a
//! CONTINUATION flood) and close the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HTTP/2 frame header length.
const FRAME_HEADER: usize = 9;
/// Frame types and flags used here (RFC 9113 section 6).
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Largest frame payload accepted: the HTTP/2 default SETTINGS_MAX_FRAME_SIZE,
/// which the server advertises (it is set explicitly where the server is built).
/// Frames we write are never larger either.
pub(crate) const MAX_FRAME_SIZE: usize = 16_384;
/// Largest decoded header list (RFC 9113 size: names, values and 32 bytes per
/// field) the server accepts; it advertises this as SETTINGS_MAX_HEADER_LIST_SIZE.
/// gRPC requests carry well under 1 KiB.
pub(crate) const MAX_HEADER_LIST_SIZE: usize = 16 * 1024;
/// Largest encoded header block we buffer. The server refuses anything near it.
const MAX_HEADER_BLOCK: usize = 4 * MAX_HEADER_LIST_SIZE;
/// Most CONTINUATION frames buffered for one header block: empty ones cost the
/// client 9 bytes each and would otherwise grow the buffer without end. The
/// server allows fewer, so a block over this is one it rejects anyway.
const MAX_CONTINUATIONS: usize = 8;
/// HPACK dynamic table size: SETTINGS_HEADER_TABLE_SIZE keeps its default, so a
/// client may not grow its table beyond this (the decoder would allow any size).
const HEADER_TABLE_SIZE: usize = 4096;
/// The authority sent in place of an invalid one.
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the connection preface.
    Preface,
    /// Waiting for the first header block to decide.
    Inspect,
    /// Re-encoding every header block.
    Rewrite,
    /// Bytes flow unchanged.
    Passthrough,
}

/// A header block being collected (HEADERS plus CONTINUATION frames).
struct Block {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    raw: Vec<u8>,
    continuations: usize,
}

/// A client connection whose invalid `:authority` is replaced by `localhost`.
pub(crate) struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    inbuf: BytesMut,
    outbuf: BytesMut,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    /// Wraps a freshly accepted connection.
    pub(crate) fn new(inner: S) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            inner,
            mode: Mode::Preface,
            inbuf: BytesMut::new(),
            outbuf: BytesMut::new(),
            block: None,
            decoder,
            encoder: loona_hpack::Encoder::new(),
            eof: false,
        }
    }

    /// Moves processed bytes from `inbuf` to `outbuf`; false when more input is needed.
    fn process(&mut self) -> bool {
        match self.mode {
            Mode::Passthrough => {
                if self.inbuf.is_empty() {
                    return false;
                }
                let rest = self.inbuf.split();
                self.outbuf.extend_from_slice(&rest);
                true
            }
            Mode::Preface => {
                let n = self.inbuf.len().min(PREFACE.len());
                if self.inbuf[..n] != PREFACE[..n] {
                    // Not HTTP/2 with prior knowledge: let the server reject it.
                    self.mode = Mode::Passthrough;
                    return true;
                }
                if n < PREFACE.len() {
                    return false;
                }
                let preface = self.inbuf.split_to(PREFACE.len());
                self.outbuf.extend_from_slice(&preface);
                self.mode = Mode::Inspect;
                true
            }
            Mode::Inspect | Mode::Rewrite => self.process_frame(),
        }
    }

    fn process_frame(&mut self) -> bool {
        if self.inbuf.len() < FRAME_HEADER {
            return false;
        }
        let len = (usize::from(self.inbuf[0]) << 16) | (usize::from(self.inbuf[1]) << 8) | usize::from(self.inbuf[2]);
        if len > MAX_FRAME_SIZE {
            return self.pass_oversize_frame();
        }
        if self.inbuf.len() < FRAME_HEADER + len {
            return false;
        }
        let frame = self.inbuf.split_to(FRAME_HEADER + len);
        let (kind, flags) = (frame[3], frame[4]);
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];

        match (kind, self.block.as_mut()) {
            (TYPE_HEADERS, None) => match header_fragment(flags, payload) {
                Some((priority, fragment)) => {
                    self.block = Some(Block {
                        stream_id,
                        end_stream: flags & FLAG_END_STREAM != 0,
                        priority,
                        fragment: fragment.to_vec(),
                        raw: frame.to_vec(),
                        continuations: 0,
                    });
                }
                None => return self.give_up(&frame),
            },
            (TYPE_CONTINUATION, Some(block)) if block.stream_id == stream_id => {
                block.continuations += 1;
                if block.continuations > MAX_CONTINUATIONS || block.fragment.len() + payload.len() > MAX_HEADER_BLOCK {
                    tracing::debug!("header block over the adapter's bounds; the server answers it");
                    return self.give_up(&frame);
                }
                block.fragment.extend_from_slice(payload);
                block.raw.extend_from_slice(&frame);
            }
            (_, Some(_)) => return self.give_up(&frame),
            (_, None) => {
                self.outbuf.extend_from_slice(&frame);
                return true;
            }
        }
        if flags & FLAG_END_HEADERS != 0 {
            self.finish_block();
        }
        true
    }

    /// A frame longer than the server accepts: its payload is never waited for.
    /// The server gets the frame's header as the client sent it (and whatever
    /// followed it so far) and answers FRAME_SIZE_ERROR. A header block in
    /// progress is dropped: the connection ends with this frame.
    fn pass_oversize_frame(&mut self) -> bool {
        tracing::debug!("frame over SETTINGS_MAX_FRAME_SIZE; the server answers it");
        self.block = None;
        let rest = self.inbuf.split();
        self.outbuf.extend_from_slice(&rest);
        self.mode = Mode::Passthrough;
        true
    }

    /// Input we cannot transform (a protocol error by the client): pass it on as it
    /// is and stop inspecting; the server answers it as it would without us.
    fn give_up(&mut self, frame: &[u8]) -> bool {
        if let Some(block) = self.block.take() {
            self.outbuf.extend_from_slice(&block.raw);
        }
        self.outbuf.extend_from_slice(frame);
        self.mode = Mode::Passthrough;
        true
    }

    fn finish_block(&mut self) {
        let Some(block) = self.block.take() else { return };
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // Indexed fields repeat table entries at a byte each: bound what is kept
        // by the decoded size, not by the block's.
        let mut list_size = 0usize;
        let decoded = self.decoder.decode_with_cb(&block.fragment, |name, value| {
            list_size = list_size.saturating_add(name.len() + value.len() + 32);
            if list_size <= MAX_HEADER_LIST_SIZE {
                headers.push((name.into_owned(), value.into_owned()));
            }
        });
        if decoded.is_err() || list_size > MAX_HEADER_LIST_SIZE {
            self.block = Some(block);
            self.give_up(&[]);
            return;
        }
        let is_bad = |(name, value): &(Vec<u8>, Vec<u8>)| {
            name.as_slice() == b":authority" && http::uri::Authority::try_from(value.as_slice()).is_err()
        };
        if self.mode == Mode::Inspect {
            if !headers.iter().any(is_bad) {
                self.outbuf.extend_from_slice(&block.raw);
                self.mode = Mode::Passthrough;
                return;
            }
            tracing::debug!("client sent a socket path as :authority; rewriting it to localhost for this connection");
            self.mode = Mode::Rewrite;
        }
        for header in &mut headers {
            if is_bad(header) {
                header.1 = REPLACEMENT_AUTHORITY.to_vec();
            }
        }
        let encoded = self.encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        self.write_block(&block, &encoded);
    }

    fn write_block(&mut self, block: &Block, encoded: &[u8]) {
        let priority_len = if block.priority.is_some() { 5 } else { 0 };
        let first_room = MAX_FRAME_SIZE - priority_len;
        let (first, mut rest) = encoded.split_at(encoded.len().min(first_room));
        let mut flags = if block.end_stream { FLAG_END_STREAM } else { 0 };
        if block.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        push_frame_header(&mut self.outbuf, priority_len + first.len(), TYPE_HEADERS, flags, block.stream_id);
        if let Some(priority) = block.priority {
            self.outbuf.extend_from_slice(&priority);
        }
        self.outbuf.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_SIZE));
            let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
            push_frame_header(&mut self.outbuf, chunk.len(), TYPE_CONTINUATION, flags, block.stream_id);
            self.outbuf.extend_from_slice(chunk);
            rest = tail;
        }
    }
}

/// The priority fields and header block fragment of a HEADERS payload.
fn header_fragment(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut body = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&len, tail) = body.split_first()?;
        pad = usize::from(len);
        body = tail;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let fields: [u8; 5] = body.get(..5)?.try_into().ok()?;
        priority = Some(fields);
        body = &body[5..];
    }
    let end = body.len().checked_sub(pad)?;
    Some((priority, &body[..end]))
}

fn push_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.outbuf.is_empty() {
                let n = buf.remaining().min(this.outbuf.len());
                buf.put_slice(&this.outbuf[..n]);
                this.outbuf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Passthrough && this.inbuf.is_empty() && this.block.is_none() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.process() {
                continue;
            }
            if this.eof {
                // A truncated frame at the end: hand it over as it is.
                let rest = this.inbuf.split();
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.outbuf.extend_from_slice(&rest);
                continue;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
            } else {
                this.inbuf.extend_from_slice(read.filled());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests;
