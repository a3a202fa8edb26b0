//! The encoded /metrics body, kept as segments that are rendered and
//! compressed once and then only copied (or just referenced) by scrapes.
//!
//! Each segment holds its text and the same text as raw deflate blocks that
//! end on a byte boundary (a sync flush). Deflate streams cut that way can be
//! concatenated, so a gzip body is a header, every segment's blocks, the
//! scrape-time tail compressed with a final block, and a trailer whose CRC is
//! combined from the segments' CRCs. A scrape compresses only the small tail,
//! however large the fleet, and a gzip answer is one ordinary gzip member.

use std::sync::Arc;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The fixed 10-byte gzip header: deflate, no name, no mtime, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A piece of the exposition, plain and deflated.
#[derive(Debug)]
pub struct Segment {
    text: Bytes,
    deflated: Bytes,
    crc: Crc,
}

impl Segment {
    pub fn new(mut text: Vec<u8>) -> Arc<Segment> {
        let mut crc = Crc::new();
        crc.update(&text);
        let mut deflated = deflate(&text, FlushCompress::Sync);
        // Segments live as long as their snapshot: no spare capacity kept.
        text.shrink_to_fit();
        deflated.shrink_to_fit();
        Arc::new(Segment {
            text: Bytes::from(text),
            deflated: Bytes::from(deflated),
            crc,
        })
    }

    pub fn text(&self) -> &Bytes {
        &self.text
    }
}

/// Compresses `input` as raw deflate, ending with `flush`.
fn deflate(input: &[u8], flush: FlushCompress) -> Vec<u8> {
    // Fast: a refresh renders a whole fleet; the size gain of more effort is small.
    let mut compress = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    loop {
        let consumed = compress.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let status = compress.compress_vec(&input[consumed..], &mut out, flush);
        let done_input = compress.total_in() as usize == input.len();
        match status {
            Ok(Status::StreamEnd) => return out,
            // A sync flush is complete once all input is in and the output had room to spare.
            Ok(_)
                if done_input
                    && !matches!(flush, FlushCompress::Finish)
                    && out.capacity() > out.len() =>
            {
                return out;
            }
            Ok(_) => {}
            // Compressing from memory to memory cannot fail but for a bug;
            // an empty member is still a valid (if short) body.
            Err(_) => return out,
        }
    }
}

/// The encoded body: segments in order, then a tail rendered per scrape.
pub fn identity_body<'a>(
    segments: impl IntoIterator<Item = &'a Arc<Segment>>,
    tail: Vec<u8>,
) -> Vec<Bytes> {
    let mut parts: Vec<Bytes> = segments.into_iter().map(|s| s.text.clone()).collect();
    parts.push(Bytes::from(tail));
    parts
}

/// The same body as one gzip member.
pub fn gzip_body<'a>(
    segments: impl IntoIterator<Item = &'a Arc<Segment>>,
    tail: &[u8],
) -> Vec<Bytes> {
    let mut crc = Crc::new();
    let mut parts = vec![Bytes::from_static(&GZIP_HEADER)];
    for segment in segments {
        crc.combine(&segment.crc);
        parts.push(segment.deflated.clone());
    }
    crc.update(tail);
    let mut end = deflate(tail, FlushCompress::Finish);
    end.extend_from_slice(&crc.sum().to_le_bytes());
    end.extend_from_slice(&crc.amount().to_le_bytes());
    parts.push(Bytes::from(end));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn gunzip(parts: &[Bytes]) -> Vec<u8> {
        let body: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        let mut out = Vec::new();
        // A single-member decoder: the body must be one member, not several.
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn segments_concatenate_into_one_gzip_member() {
        let texts: Vec<Vec<u8>> = vec![
            b"# HELP a x\n# TYPE a gauge\n".to_vec(),
            (0..5000)
                .map(|i| format!("a{{iccid=\"{i:019}\"}} {i}\n"))
                .collect::<String>()
                .into_bytes(),
            Vec::new(),
            "b{name=\"Zähler-東京-🚚\"} 1\n".as_bytes().to_vec(),
        ];
        let segments: Vec<_> = texts.iter().cloned().map(Segment::new).collect();
        let tail = b"# TYPE up gauge\nup 1\n".to_vec();
        let expected: Vec<u8> = texts
            .concat()
            .into_iter()
            .chain(tail.iter().copied())
            .collect();

        assert_eq!(gunzip(&gzip_body(&segments, &tail)), expected);
        let identity: Vec<u8> = identity_body(&segments, tail.clone())
            .iter()
            .flat_map(|b| b.to_vec())
            .collect();
        assert_eq!(identity, expected);
        assert_eq!(gunzip(&gzip_body([], b"")), b"");
        assert_eq!(gunzip(&gzip_body([], &tail)), tail);
    }

    #[test]
    fn large_segments_compress() {
        let text: Vec<u8> = (0..200_000)
            .map(|i| format!("m{{iccid=\"{i:019}\"}} 1\n"))
            .collect::<String>()
            .into_bytes();
        let segment = Segment::new(text.clone());
        assert!(
            segment.deflated.len() * 4 < text.len(),
            "{} of {}",
            segment.deflated.len(),
            text.len()
        );
        assert_eq!(gunzip(&gzip_body([&segment], b"")), text);
    }
}
