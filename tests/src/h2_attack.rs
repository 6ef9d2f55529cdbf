//! A hostile HTTP/2 client: writes whatever frames a test hands it and reports how the server answered.
//!
//! It speaks just enough HTTP/2 to get past the connection preface (the client preface and an empty SETTINGS
//! frame), then sends the test's frames while reading the server's in parallel, until the server sends GOAWAY,
//! resets the attacked stream, or closes the connection.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;

/// Every HTTP/2 connection starts with these bytes (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
/// Frame types (RFC 9113 §6).
pub const TYPE_DATA: u8 = 0x0;
/// HEADERS.
pub const TYPE_HEADERS: u8 = 0x1;
const TYPE_RST_STREAM: u8 = 0x3;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_GOAWAY: u8 = 0x7;
/// CONTINUATION.
pub const TYPE_CONTINUATION: u8 = 0x9;
/// END_STREAM.
pub const FLAG_END_STREAM: u8 = 0x1;
/// END_HEADERS.
pub const FLAG_END_HEADERS: u8 = 0x4;
/// Larger server frames are not expected; the reader stops rather than buffer them.
const MAX_SERVER_FRAME: usize = 1 << 20;

/// HTTP/2 error codes (RFC 9113 §7).
pub mod code {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 0x1;
    /// FRAME_SIZE_ERROR.
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 0x7;
    /// COMPRESSION_ERROR.
    pub const COMPRESSION_ERROR: u32 = 0x9;
    /// ENHANCE_YOUR_CALM.
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// How the server answered an attack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// GOAWAY with this error code.
    GoAway(u32),
    /// RST_STREAM on a stream with this error code.
    Reset {
        /// The stream.
        stream_id: u32,
        /// The error code.
        code: u32,
    },
    /// A response other than 200 on a stream (e.g. 431, header fields too large).
    Status {
        /// The stream.
        stream_id: u32,
        /// The HTTP status.
        status: u16,
    },
    /// The connection ended without GOAWAY.
    Closed,
}

/// One frame: 9-byte header and payload.
pub fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    frame_header(payload.len(), kind, flags, stream_id)
        .into_iter()
        .chain(payload.iter().copied())
        .collect()
}

/// A frame header claiming `len` payload bytes.
pub fn frame_header(len: usize, kind: u8, flags: u8, stream_id: u32) -> Vec<u8> {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    out
}

/// The HPACK block of a gRPC request for `path` with `authority` and extra literal fields.
pub fn request_block(authority: &str, path: &str, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut encoder = loona_hpack::Encoder::new();
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.as_bytes()),
        (b":authority", authority.as_bytes()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ];
    fields.extend_from_slice(extra);
    encoder.encode(fields)
}

/// A connection that has sent the client preface and an empty SETTINGS frame.
pub async fn connect(socket: &Path) -> anyhow::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    stream.write_all(PREFACE).await.context("writing the preface")?;
    stream
        .write_all(&frame(TYPE_SETTINGS, 0, 0, &[]))
        .await
        .context("writing SETTINGS")?;
    Ok(stream)
}

/// Sends the preface, then `attack` (written in pieces of at most 64 KiB, `repeat` times), while reading the
/// server's frames; returns the server's answer, or an error if none came within `timeout`.
pub async fn attack(
    socket: &Path,
    attack: Vec<u8>,
    repeat: usize,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let stream = connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..repeat {
            for piece in attack.chunks(64 * 1024) {
                // The server may close mid-attack; what it answered is what counts.
                if write.write_all(piece).await.is_err() {
                    return write;
                }
            }
        }
        write
    });
    let answer = tokio::time::timeout(timeout, read_answer(read))
        .await
        .context("the server neither answered nor closed the connection in time")?;
    writer.abort();
    answer
}

/// Reads server frames until GOAWAY, RST_STREAM or the end of the connection.
pub async fn read_answer(mut read: OwnedReadHalf) -> anyhow::Result<Answer> {
    let mut decoder = loona_hpack::Decoder::new();
    loop {
        let mut head = [0u8; FRAME_HEADER_LEN];
        if read_exact_or_eof(&mut read, &mut head).await?.is_none() {
            return Ok(Answer::Closed);
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        anyhow::ensure!(
            len <= MAX_SERVER_FRAME,
            "server frame of {len} bytes is too large"
        );
        let mut payload = vec![0u8; len];
        if read_exact_or_eof(&mut read, &mut payload).await?.is_none() {
            return Ok(Answer::Closed);
        }
        let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        match head[3] {
            TYPE_GOAWAY if payload.len() >= 8 => {
                return Ok(Answer::GoAway(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ])));
            }
            TYPE_HEADERS => {
                // The server sends neither padding, priority nor CONTINUATION for a response this small.
                let fields = decoder
                    .decode(&payload)
                    .map_err(|e| anyhow::anyhow!("undecodable response headers: {e:?}"))?;
                let status = fields
                    .iter()
                    .find(|(name, _)| name == b":status")
                    .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse::<u16>().ok());
                if let Some(status) = status.filter(|s| *s != 200) {
                    return Ok(Answer::Status { stream_id, status });
                }
            }
            TYPE_RST_STREAM if payload.len() >= 4 => {
                return Ok(Answer::Reset {
                    stream_id,
                    code: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                });
            }
            _ => {}
        }
    }
}

/// Fills `buf`, or returns `None` if the connection ended (or was reset) first.
async fn read_exact_or_eof(read: &mut OwnedReadHalf, buf: &mut [u8]) -> anyhow::Result<Option<()>> {
    let mut filled = 0;
    while filled < buf.len() {
        match read.read(&mut buf[filled..]).await {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e).context("reading from the server"),
        }
    }
    Ok(Some(()))
}

/// Reads server frames until response headers arrive on `stream_id` (any status).
pub async fn wait_response(stream: &mut UnixStream, stream_id: u32) -> anyhow::Result<()> {
    loop {
        let mut head = [0u8; FRAME_HEADER_LEN];
        stream.read_exact(&mut head).await.context("reading a frame header")?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        anyhow::ensure!(len <= MAX_SERVER_FRAME, "server frame of {len} bytes is too large");
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.context("reading a frame payload")?;
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        anyhow::ensure!(head[3] != TYPE_GOAWAY, "the server sent GOAWAY");
        if head[3] == TYPE_HEADERS && id == stream_id {
            return Ok(());
        }
    }
}

/// Waits until the server closes `stream` (reads end of input, discarding anything it sent first).
pub async fn wait_closed(stream: &mut UnixStream, timeout: Duration) -> anyhow::Result<()> {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(timeout, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e).context("reading from the server"),
            }
        }
    })
    .await
    .context("the server did not close the connection in time")?
}
