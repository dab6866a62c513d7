//! The TFRecord framing of event files: each record is
//!
//! ```text
//! u64 length (little-endian) | u32 masked CRC-32C of those 8 bytes | payload |
//! u32 masked CRC-32C of the payload
//! ```
//!
//! where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (TensorFlow's `crc32c::Mask`), all
//! little-endian. CRC-32C (Castagnoli) comes from the `crc32c` crate.
use anyhow::bail;
use std::path::Path;

/// TensorFlow's mask constant.
const MASK_DELTA: u32 = 0xa282_ead8;

/// The masked CRC-32C of `data`, as TFRecord stores it.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(MASK_DELTA)
}

/// One record around `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
    out
}

/// The payloads of the records in `bytes` (the contents of `path`, named in errors), every CRC
/// checked; a truncated last record is an error too.
pub fn unframe(bytes: &[u8], path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = vec![];
    let mut at = 0usize;
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    while at < bytes.len() {
        let n = out.len();
        if bytes.len() - at < 12 {
            bail!(
                "{}: record {n} at byte {at}: expected a 12-byte header, found {} bytes (truncated)",
                path.display(),
                bytes.len() - at
            );
        }
        let len_bytes = &bytes[at..at + 8];
        let (want, found) = (u32_at(at + 8), masked_crc32c(len_bytes));
        if want != found {
            bail!(
                "{}: record {n} at byte {at}: length CRC-32C: expected {want:#010x} (stored), found {found:#010x}",
                path.display()
            );
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        let start = at + 12;
        let left = (bytes.len() - start) as u64;
        if left < len.saturating_add(4) {
            bail!(
                "{}: record {n} at byte {at}: expected {len} payload bytes and a CRC, found {left} bytes (truncated)",
                path.display()
            );
        }
        let end = start + len as usize;
        let payload = &bytes[start..end];
        let (want, found) = (u32_at(end), masked_crc32c(payload));
        if want != found {
            bail!(
                "{}: record {n} at byte {at}: payload CRC-32C: expected {want:#010x} (stored), found {found:#010x}",
                path.display()
            );
        }
        out.push(payload.to_vec());
        at = end + 4;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_its_mask_give_the_published_values() {
        // The CRC-32C check value (RFC 3720's polynomial) and two vectors of RFC 3720, B.4.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        // Masked values as TensorBoard's own `masked_crc32c` computes them
        // (tensorboard.compat.tensorflow_stub.pywrap_tensorflow, 2.21.0).
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(&0u64.to_le_bytes()), 0x0798_0329);
    }

    #[test]
    fn a_record_is_framed_as_tensorflow_frames_it() {
        // The bytes TensorBoard's RecordWriter writes for the payload b"hello".
        let want = [
            5, 0, 0, 0, 0, 0, 0, 0, 234, 178, 4, 62, b'h', b'e', b'l', b'l', b'o', 187, 31, 28, 25,
        ];
        assert_eq!(frame(b"hello"), want);
        let two = [frame(b"hello"), frame(b"")].concat();
        let p = Path::new("x");
        assert_eq!(unframe(&two, p).unwrap(), vec![b"hello".to_vec(), vec![]]);
    }

    #[test]
    fn a_flipped_or_missing_byte_is_an_error_naming_the_record() {
        let p = Path::new("events.x");
        let two = [frame(b"first"), frame(b"second")].concat();
        let second = frame(b"first").len();
        // A flipped bit in every byte of the second record is caught.
        for i in second..two.len() {
            let mut bad = two.clone();
            bad[i] ^= 0x10;
            let e = unframe(&bad, p).unwrap_err().to_string();
            assert!(
                e.starts_with("events.x: record 1 at byte 21: ")
                    && (e.contains("CRC-32C") || e.contains("truncated")),
                "byte {i}: {e}"
            );
        }
        let e = unframe(&two[..two.len() - 1], p).unwrap_err().to_string();
        assert!(e.contains("record 1") && e.contains("truncated"), "{e}");
        let e = unframe(&two[..second + 5], p).unwrap_err().to_string();
        assert!(e.contains("12-byte header"), "{e}");
    }
}
