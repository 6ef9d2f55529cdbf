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
