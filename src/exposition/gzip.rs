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
    pub fn new(text: Vec<u8>) -> Arc<Segment> {
        let end = text.len();
        Deflater::default()
            .segments(&text, &[end])
            .pop()
            .unwrap_or_else(|| Arc::new(Segment::empty()))
    }

    fn empty() -> Segment {
        Segment {
            text: Bytes::new(),
            deflated: Bytes::new(),
            crc: Crc::new(),
        }
    }

    pub fn text(&self) -> &Bytes {
        &self.text
    }
}

/// Makes segments with one compressor and one scratch buffer, however many,
/// so that each batch of segments costs two exact allocations and nothing
/// that is grown, shrunk or thrown away: a refresh of a large fleet makes
/// thousands, and churn would leave the allocator holding memory.
pub struct Deflater {
    compress: Compress,
    scratch: Vec<u8>,
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater {
            // Fast: a refresh renders a whole fleet; the size gain of more effort is small.
            compress: Compress::new(Compression::fast(), false),
            scratch: Vec::new(),
        }
    }
}

impl Deflater {
    /// One segment for each piece of `text`, the pieces ending at `ends`.
    /// They share one allocation for their text and one for their deflate.
    pub fn segments(&mut self, text: &[u8], ends: &[usize]) -> Vec<Arc<Segment>> {
        let text = Bytes::copy_from_slice(text);
        self.scratch.clear();
        let mut pieces = Vec::with_capacity(ends.len());
        let mut start = 0;
        for &end in ends {
            let end = end.clamp(start, text.len());
            let from = self.scratch.len();
            // Each piece is a stream of its own: it follows other text in other bodies.
            self.compress.reset();
            deflate_into(
                &mut self.compress,
                &text[start..end],
                FlushCompress::Sync,
                &mut self.scratch,
            );
            pieces.push((start..end, from..self.scratch.len()));
            start = end;
        }
        let deflated = Bytes::copy_from_slice(&self.scratch);
        pieces
            .into_iter()
            .map(|(plain, packed)| {
                let mut crc = Crc::new();
                crc.update(&text[plain.clone()]);
                Arc::new(Segment {
                    text: text.slice(plain),
                    deflated: deflated.slice(packed),
                    crc,
                })
            })
            .collect()
    }
}

/// Appends `input` as raw deflate to `out`, ending with `flush`.
fn deflate_into(compress: &mut Compress, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
    let start_in = compress.total_in();
    out.reserve(input.len() / 4 + 64);
    loop {
        let consumed = (compress.total_in() - start_in) as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let status = compress.compress_vec(&input[consumed..], out, flush);
        let done_input = (compress.total_in() - start_in) as usize == input.len();
        match status {
            Ok(Status::StreamEnd) => return,
            // A sync flush is complete once all input is in and the output had room to spare.
            Ok(_)
                if done_input
                    && !matches!(flush, FlushCompress::Finish)
                    && out.capacity() > out.len() =>
            {
                return;
            }
            Ok(_) => {}
            // Compressing from memory to memory cannot fail but for a bug;
            // an empty member is still a valid (if short) body.
            Err(_) => return,
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
    let mut end = Vec::new();
    deflate_into(
        &mut Compress::new(Compression::fast(), false),
        tail,
        FlushCompress::Finish,
        &mut end,
    );
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
    fn pieces_of_one_buffer_concatenate_in_any_order() {
        // As a snapshot sends them: each bucket's families interleaved with
        // the other buckets', family by family.
        let mut deflater = Deflater::default();
        let buckets: Vec<(Vec<u8>, Vec<Arc<Segment>>)> = (0..3)
            .map(|bucket| {
                let families: Vec<String> = (0..4)
                    .map(|family| {
                        (0..300)
                            .map(|i| format!("f{family}{{iccid=\"{bucket}{i:018}\"}} {i}\n"))
                            .collect()
                    })
                    .collect();
                let mut ends = Vec::new();
                let mut text = Vec::new();
                for family in &families {
                    text.extend_from_slice(family.as_bytes());
                    ends.push(text.len());
                }
                let segments = deflater.segments(&text, &ends);
                (text, segments)
            })
            .collect();
        let mut order = Vec::new();
        let mut expected = Vec::new();
        for family in 0..4 {
            for (text, segments) in &buckets {
                let start: usize = segments[..family].iter().map(|s| s.text.len()).sum();
                expected.extend_from_slice(&text[start..start + segments[family].text.len()]);
                order.push(&segments[family]);
            }
        }
        assert_eq!(
            gunzip(&gzip_body(order.iter().copied(), b"tail\n")),
            [&expected[..], b"tail\n"].concat()
        );
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
