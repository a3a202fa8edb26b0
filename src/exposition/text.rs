//! The text exposition format 0.0.4, as far as this exporter writes it by
//! hand: label values and sample values.

use std::io::Write as _;

/// The content type of the text format.
pub(crate) const CONTENT_TYPE_TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value as the text format requires: backslash, double quote
/// and line feed. Everything else, any Unicode included, passes as is.
pub(crate) fn escape_label_value(value: &str, out: &mut Vec<u8>) {
    // Nearly every value needs no escaping: copy it whole.
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            // UTF-8 continuation bytes never equal the three above.
            byte => out.push(byte),
        }
    }
}

/// Whole numbers below this print exactly as integers.
const EXACT_INTEGER: f64 = 1e15;

/// Writes a sample value as the text format spells it.
pub(crate) fn write_value(value: f64, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if value.fract() == 0.0 && value.abs() < EXACT_INTEGER {
        // Most values (flags, counts, Unix times) are whole: the integer
        // formatter writes the same digits as `f64`'s, several times faster.
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{value}");
    }
}
