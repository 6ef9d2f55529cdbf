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
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn headers_frame(encoder: &mut loona_hpack::Encoder<'_>, stream_id: u32, authority: &[u8], flags: u8) -> Vec<u8> {
        let block = encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/v1alpha1.CSIDriverProvider/Mount"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]);
        let mut out = BytesMut::new();
        push_frame_header(&mut out, block.len(), TYPE_HEADERS, flags | FLAG_END_HEADERS, stream_id);
        out.extend_from_slice(&block);
        out.to_vec()
    }

    fn settings_frame() -> Vec<u8> {
        let mut out = BytesMut::new();
        push_frame_header(&mut out, 0, 0x4, 0, 0);
        out.to_vec()
    }

    async fn run(input: Vec<u8>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut fixed = AuthorityFix::new(server);
        client.write_all(&input).await.expect("write");
        drop(client);
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.expect("read");
        out
    }

    /// Splits a byte stream (after the preface) into (type, flags, payload) frames.
    fn frames(bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        let mut rest = &bytes[PREFACE.len()..];
        let mut out = Vec::new();
        while rest.len() >= FRAME_HEADER {
            let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            out.push((rest[3], rest[4], rest[FRAME_HEADER..FRAME_HEADER + len].to_vec()));
            rest = &rest[FRAME_HEADER + len..];
        }
        out
    }

    fn authorities(stream: &[u8]) -> Vec<Vec<u8>> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut found = Vec::new();
        for (kind, _, payload) in frames(stream) {
            if kind == TYPE_HEADERS {
                for (name, value) in decoder.decode(&payload).expect("decodes") {
                    if name == b":authority" {
                        found.push(value);
                    }
                }
            }
        }
        found
    }

    #[tokio::test]
    async fn valid_authority_passes_through_byte_for_byte() {
        let mut enc = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(settings_frame());
        input.extend(headers_frame(&mut enc, 1, b"localhost", 0));
        input.extend(headers_frame(&mut enc, 3, b"localhost", FLAG_END_STREAM));
        assert_eq!(run(input.clone()).await, input);
    }

    #[tokio::test]
    async fn socket_path_authority_is_replaced_on_every_request() {
        let path = b"/var/run/secrets-store-csi-providers/courier.sock";
        let mut enc = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(settings_frame());
        input.extend(headers_frame(&mut enc, 1, path, 0));
        input.extend(headers_frame(&mut enc, 3, path, FLAG_END_STREAM));
        let out = run(input).await;
        assert_eq!(authorities(&out), vec![b"localhost".to_vec(), b"localhost".to_vec()]);
        let kinds: Vec<(u8, u8)> = frames(&out).iter().map(|(k, f, _)| (*k, *f)).collect();
        assert_eq!(kinds, vec![(0x4, 0), (TYPE_HEADERS, FLAG_END_HEADERS), (TYPE_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM)]);
    }

    #[tokio::test]
    async fn padding_priority_and_continuations_are_handled() {
        let path = b"/tmp/provider.sock";
        let mut enc = loona_hpack::Encoder::new();
        let block = enc.encode([(&b":method"[..], &b"POST"[..]), (b":authority", path), (b"x-big", &[b'a'; 12_000][..])]);
        let (head, tail) = block.split_at(10);
        let mut input = PREFACE.to_vec();
        let mut frame = BytesMut::new();
        // HEADERS with 3 bytes of padding and priority, then one CONTINUATION.
        push_frame_header(&mut frame, 1 + 5 + head.len() + 3, TYPE_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 1);
        frame.extend_from_slice(&[3, 0, 0, 0, 0, 16]);
        frame.extend_from_slice(head);
        frame.extend_from_slice(&[0, 0, 0]);
        push_frame_header(&mut frame, tail.len(), TYPE_CONTINUATION, FLAG_END_HEADERS, 1);
        frame.extend_from_slice(tail);
        input.extend_from_slice(&frame);
        let out = run(input).await;
        let frames = frames(&out);
        assert_eq!(frames[0].0, TYPE_HEADERS);
        assert_eq!(frames[0].1 & FLAG_PRIORITY, FLAG_PRIORITY);
        assert!(frames.iter().all(|(_, _, p)| p.len() <= MAX_FRAME_SIZE));
        let mut block = frames[0].2[5..].to_vec();
        for (_, _, payload) in &frames[1..] {
            block.extend_from_slice(payload);
        }
        let decoded = loona_hpack::Decoder::new().decode(&block).expect("decodes");
        assert!(decoded.contains(&(b":authority".to_vec(), b"localhost".to_vec())));
        assert!(decoded.iter().any(|(n, v)| n == b"x-big" && v.len() == 12_000));
    }

    /// Reads what the adapter hands the server while the client keeps the
    /// connection open: the adapter must not wait for more input.
    async fn forwarded_without_eof(input: &[u8], expected_len: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut fixed = AuthorityFix::new(server);
        client.write_all(input).await.expect("write");
        let mut out = vec![0u8; expected_len];
        tokio::time::timeout(std::time::Duration::from_secs(10), fixed.read_exact(&mut out))
            .await
            .expect("the adapter waited for input it must not wait for")
            .expect("read");
        assert_eq!(fixed.mode, Mode::Passthrough);
        assert!(fixed.block.is_none() && fixed.inbuf.is_empty());
        drop(client);
        out
    }

    #[tokio::test]
    async fn an_oversize_frame_is_handed_on_without_waiting_for_its_payload() {
        let mut enc = loona_hpack::Encoder::new();
        for authority in [&b"localhost"[..], b"/tmp/p.sock"] {
            let mut input = PREFACE.to_vec();
            // A header block in progress, then a frame claiming 16 MiB.
            let mut first = headers_frame(&mut enc, 1, authority, 0);
            first[4] &= !FLAG_END_HEADERS;
            input.extend_from_slice(&first);
            let mut oversize = BytesMut::new();
            push_frame_header(&mut oversize, (1 << 24) - 1, TYPE_CONTINUATION, 0, 1);
            oversize.extend_from_slice(&[0u8; 100]);
            input.extend_from_slice(&oversize);
            let out = forwarded_without_eof(&input, PREFACE.len() + oversize.len()).await;
            // The server sees the preface and the oversize frame header, exactly as sent.
            assert_eq!(&out[..PREFACE.len()], PREFACE);
            assert_eq!(&out[PREFACE.len()..], &oversize[..]);
        }
    }

    #[tokio::test]
    async fn a_continuation_flood_is_handed_on_after_a_bounded_buffer() {
        let mut enc = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        let mut first = headers_frame(&mut enc, 1, b"/tmp/p.sock", 0);
        first[4] &= !FLAG_END_HEADERS;
        input.extend_from_slice(&first);
        let mut empty = BytesMut::new();
        push_frame_header(&mut empty, 0, TYPE_CONTINUATION, 0, 1);
        for _ in 0..10_000 {
            input.extend_from_slice(&empty);
        }
        // Everything passes unchanged once the bound is crossed.
        let out = forwarded_without_eof(&input, input.len()).await;
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn a_header_block_over_the_byte_bound_is_handed_on() {
        let mut input = PREFACE.to_vec();
        let mut frame = BytesMut::new();
        push_frame_header(&mut frame, MAX_FRAME_SIZE, TYPE_HEADERS, 0, 1);
        frame.extend_from_slice(&[0x40u8; MAX_FRAME_SIZE]);
        input.extend_from_slice(&frame);
        for _ in 0..(MAX_HEADER_BLOCK / MAX_FRAME_SIZE) {
            let mut cont = BytesMut::new();
            push_frame_header(&mut cont, MAX_FRAME_SIZE, TYPE_CONTINUATION, 0, 1);
            cont.extend_from_slice(&[0x40u8; MAX_FRAME_SIZE]);
            input.extend_from_slice(&cont);
        }
        let out = forwarded_without_eof(&input, input.len()).await;
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn an_hpack_bomb_is_handed_on_undecoded() {
        // One 4 KB field added to the table, then referenced a thousand times: a
        // 5 KB block that decodes to 4 MB.
        // Literal with incremental indexing, new name "x", value length 4000
        // (7-bit prefix: 127, then 3873 in base-128 digits).
        let mut block = vec![0x40, 0x01, b'x', 0x7f, 0xa1, 0x1e];
        block.extend_from_slice(&[b'v'; 4000]);
        block.extend_from_slice(&[0xbe; 1000]); // index 62: the first dynamic entry
        assert!(loona_hpack::Decoder::new().decode(&block).expect("a valid block").len() > 1000);
        let mut input = PREFACE.to_vec();
        let mut frame = BytesMut::new();
        push_frame_header(&mut frame, block.len(), TYPE_HEADERS, FLAG_END_HEADERS, 1);
        frame.extend_from_slice(&block);
        input.extend_from_slice(&frame);
        let out = forwarded_without_eof(&input, input.len()).await;
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn a_table_size_over_the_default_is_refused() {
        // Dynamic table size update to 1 MiB (5-bit prefix integer), then a field.
        let mut block = vec![0x3f, 0xe1, 0xff, 0x3f];
        block.extend_from_slice(&[0x82]);
        let mut input = PREFACE.to_vec();
        let mut frame = BytesMut::new();
        push_frame_header(&mut frame, block.len(), TYPE_HEADERS, FLAG_END_HEADERS, 1);
        frame.extend_from_slice(&block);
        input.extend_from_slice(&frame);
        let out = forwarded_without_eof(&input, input.len()).await;
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn garbage_is_passed_on_unchanged() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(run(input.clone()).await, input);
        let mut truncated = PREFACE.to_vec();
        truncated.extend_from_slice(&[0, 0, 50, TYPE_HEADERS, 0, 0, 0, 0, 1, 1, 2]);
        assert_eq!(run(truncated.clone()).await, truncated);
    }
}
