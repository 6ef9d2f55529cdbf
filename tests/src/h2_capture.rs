//! Reads the request headers a gRPC client sends, straight off an HTTP/2 connection.
//!
//! It plays just enough server to get a client's first request: it checks the connection preface, sends an empty
//! SETTINGS frame, acknowledges the client's, and decodes the first HEADERS block (with its CONTINUATION frames)
//! with HPACK. It never answers the request, so the client fails afterwards; that is expected.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// Every HTTP/2 connection starts with these bytes (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Our SETTINGS frames: empty, and the ACK of the client's.
const EMPTY_SETTINGS: [u8; FRAME_HEADER_LEN] = [0, 0, 0, TYPE_SETTINGS, 0, 0, 0, 0, 0];
const SETTINGS_ACK: [u8; FRAME_HEADER_LEN] = [0, 0, 0, TYPE_SETTINGS, FLAG_ACK, 0, 0, 0, 0];
/// Larger frames are not expected from a client's first request.
const MAX_FRAME_LEN: usize = 1 << 20;

/// Accepts one connection on `listener` and returns the header fields of its first request, in order.
pub async fn capture_request_headers(
    listener: &UnixListener,
    timeout: Duration,
) -> anyhow::Result<Vec<(String, String)>> {
    tokio::time::timeout(timeout, capture(listener))
        .await
        .context("no request headers arrived in time")?
}

/// The value of `name` among `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn capture(listener: &UnixListener) -> anyhow::Result<Vec<(String, String)>> {
    let (mut stream, _) = listener
        .accept()
        .await
        .context("accepting the client's connection")?;
    let mut preface = [0u8; PREFACE.len()];
    stream
        .read_exact(&mut preface)
        .await
        .context("reading the connection preface")?;
    ensure!(
        preface == PREFACE,
        "the client did not start with the HTTP/2 preface: {preface:?}"
    );
    stream
        .write_all(&EMPTY_SETTINGS)
        .await
        .context("sending SETTINGS")?;

    let mut block = Vec::new();
    let mut in_headers = false;
    loop {
        let mut head = [0u8; FRAME_HEADER_LEN];
        stream
            .read_exact(&mut head)
            .await
            .context("reading a frame header")?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        ensure!(len <= MAX_FRAME_LEN, "frame of {len} bytes is too large");
        let mut payload = vec![0u8; len];
        stream
            .read_exact(&mut payload)
            .await
            .context("reading a frame payload")?;

        match kind {
            TYPE_SETTINGS if flags & FLAG_ACK == 0 => stream
                .write_all(&SETTINGS_ACK)
                .await
                .context("acking SETTINGS")?,
            TYPE_HEADERS if !in_headers => {
                block.extend_from_slice(header_block_fragment(&payload, flags)?);
                in_headers = true;
                if flags & FLAG_END_HEADERS != 0 {
                    return decode(&block);
                }
            }
            TYPE_CONTINUATION if in_headers => {
                block.extend_from_slice(&payload);
                if flags & FLAG_END_HEADERS != 0 {
                    return decode(&block);
                }
            }
            _ if in_headers => bail!("frame type {kind} interrupted a header block"),
            _ => {}
        }
    }
}

/// Strips padding and priority fields from a HEADERS payload (RFC 9113 §6.2).
fn header_block_fragment(payload: &[u8], flags: u8) -> anyhow::Result<&[u8]> {
    let mut fragment = payload;
    let mut padding = 0;
    if flags & FLAG_PADDED != 0 {
        let (&pad, rest) = fragment
            .split_first()
            .context("PADDED HEADERS without a pad length")?;
        padding = usize::from(pad);
        fragment = rest;
    }
    if flags & FLAG_PRIORITY != 0 {
        fragment = fragment.get(5..).context("PRIORITY HEADERS too short")?;
    }
    let end = fragment
        .len()
        .checked_sub(padding)
        .context("padding longer than the frame")?;
    Ok(&fragment[..end])
}

fn decode(block: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
    let fields = loona_hpack::Decoder::new()
        .decode(block)
        .map_err(|error| anyhow::anyhow!("cannot decode the header block: {error:?}"))?;
    Ok(fields
        .into_iter()
        .map(|(name, value)| {
            (
                String::from_utf8_lossy(&name).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect())
}
