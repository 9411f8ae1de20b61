//! Kafka's record batch format (magic 2, uncompressed), read without a Python object per record.
//!
//! A fetch response carries each partition's records as a run of record batches. aiokafka turns
//! every record into a `ConsumerRecord` (~1 µs each, most of a bare consume loop's cost); the
//! ingest worker hands the whole run here instead (`stream/kafka/chunks.py`), and only the
//! records the wire decoder cannot take become Python objects.
//!
//! Layout (https://kafka.apache.org/documentation/#recordbatch): a 61-byte batch header, then
//! `records_count` records of varint-prefixed fields. Like aiokafka, this checks each batch's
//! CRC-32C, skips control batches and records below the fetch offset, and stops at a batch the
//! broker cut short at the end of the response.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

pub const HEADER: usize = 61;
const COMPRESSION_MASK: i16 = 0x07;
const CONTROL_BIT: i16 = 0x20;

pub struct Record<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

#[derive(Debug)]
pub enum Error {
    /// The bytes are not a well-formed v2 batch run (or fail their checksum).
    Corrupt(String),
    /// Well-formed, but a kind this reader leaves to aiokafka (old magic, compression).
    Unsupported(String),
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// A zigzag varint of at most `max_bytes` bytes (5 for int32, 10 for int64).
    fn varint(&mut self, max_bytes: usize) -> Option<i64> {
        let mut raw: u64 = 0;
        for n in 0..max_bytes {
            let byte = *self.b.get(self.i)?;
            self.i += 1;
            raw |= u64::from(byte & 0x7f) << (7 * n);
            if byte & 0x80 == 0 {
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<Option<&'a [u8]>> {
        let len = self.varint(5)?;
        if len < 0 {
            return Some(None);
        }
        let end = self.i.checked_add(len as usize)?;
        let out = self.b.get(self.i..end)?;
        self.i = end;
        Some(Some(out))
    }
}

/// Calls `each` for every record at or past `fetch_offset`, in offset order; returns the offset
/// after the last complete batch (where the next fetch should start; `fetch_offset` if none).
pub fn for_each_record<'a>(
    buf: &'a [u8],
    fetch_offset: i64,
    check_crc: bool,
    mut each: impl FnMut(Record<'a>),
) -> Result<i64, Error> {
    let mut pos = 0usize;
    let mut next = fetch_offset;
    while buf.len() - pos >= HEADER {
        let base = be_i64(buf, pos);
        let length = be_i32(buf, pos + 8);
        if length < (HEADER - 12) as i32 {
            return Err(Error::Corrupt(format!(
                "batch at offset {base} declares {length} bytes"
            )));
        }
        let end = pos + 12 + length as usize;
        if end > buf.len() {
            break; // the broker cut the last batch at the fetch size: it comes whole next time
        }
        let batch = &buf[pos..end];
        pos = end;
        let magic = batch[16] as i8;
        if magic != 2 {
            return Err(Error::Unsupported(format!(
                "record batch magic {magic} at offset {base}"
            )));
        }
        if check_crc {
            let stored = u32::from_be_bytes(batch[17..21].try_into().unwrap());
            if crc32c(&batch[21..]) != stored {
                return Err(Error::Corrupt(format!(
                    "CRC-32C mismatch in the batch at offset {base}"
                )));
            }
        }
        let attributes = be_i16(batch, 21);
        if attributes & COMPRESSION_MASK != 0 {
            return Err(Error::Unsupported(format!(
                "compressed record batch (codec {}) at offset {base}",
                attributes & COMPRESSION_MASK
            )));
        }
        let last = base + i64::from(be_i32(batch, 23));
        next = next.max(last + 1);
        if attributes & CONTROL_BIT != 0 {
            continue; // transaction markers are not data (aiokafka skips them too)
        }
        let log_append_time = attributes & 0x08 != 0;
        let base_ts = be_i64(batch, 27);
        let max_ts = be_i64(batch, 35);
        let count = be_i32(batch, 57);
        let mut c = Cursor { b: batch, i: HEADER };
        for _ in 0..count.max(0) {
            let bad = || Error::Corrupt(format!("truncated record in the batch at offset {base}"));
            let len = c.varint(5).ok_or_else(bad)?;
            let start = c.i;
            let rec_end = start
                .checked_add(len.max(0) as usize)
                .filter(|&e| e <= batch.len())
                .ok_or_else(bad)?;
            c.i += 1; // record attributes: unused
            let ts_delta = c.varint(10).ok_or_else(bad)?;
            let off_delta = c.varint(5).ok_or_else(bad)?;
            let key = c.bytes().ok_or_else(bad)?;
            let value = c.bytes().ok_or_else(bad)?;
            if c.i > rec_end {
                return Err(bad());
            }
            c.i = rec_end; // headers: unused
            let offset = base + off_delta;
            if offset >= fetch_offset {
                let timestamp = if log_append_time { max_ts } else { base_ts + ts_delta };
                each(Record {
                    offset,
                    timestamp,
                    key,
                    value,
                });
            }
        }
    }
    Ok(next)
}

// ---- Python side -----------------------------------------------------------------------------

/// `(offset, timestamp, key, value, position)` of a record `Kernel::stage_kafka` hands back.
pub type DeferredRecord<'py> = (
    i64,
    i64,
    Option<Bound<'py, PyBytes>>,
    Option<Bound<'py, PyBytes>>,
    usize,
);

pub fn kafka_error(e: Error) -> PyErr {
    match e {
        Error::Corrupt(m) => PyValueError::new_err(format!("corrupt Kafka record batch: {m}")),
        Error::Unsupported(m) => PyValueError::new_err(format!("unsupported Kafka record batch: {m}")),
    }
}

/// Every record of a partition's fetched record batches at or past `fetch_offset`, as
/// `(offset, timestamp, key, value)`.
#[pyfunction]
#[pyo3(signature = (buf, fetch_offset, check_crc=true))]
pub fn kafka_records<'py>(
    py: Python<'py>,
    buf: &[u8],
    fetch_offset: i64,
    check_crc: bool,
) -> PyResult<Vec<(i64, i64, Option<Bound<'py, PyBytes>>, Option<Bound<'py, PyBytes>>)>> {
    let mut out = Vec::new();
    for_each_record(buf, fetch_offset, check_crc, |r| {
        let b = |x: Option<&[u8]>| x.map(|x| PyBytes::new(py, x));
        out.push((r.offset, r.timestamp, b(r.key), b(r.value)));
    })
    .map_err(kafka_error)?;
    Ok(out)
}

// ---- CRC-32C (Castagnoli), as Kafka's v2 batches use ----------------------------------------

const POLY: u32 = 0x82F6_3B78; // reflected

static TABLE: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();

fn table() -> &'static [[u32; 256]; 8] {
    TABLE.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for n in 0..256u32 {
            let mut c = n;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            t[0][n as usize] = c;
        }
        for n in 0..256 {
            for k in 1..8 {
                let prev = t[k - 1][n];
                t[k][n] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            }
        }
        t
    })
}

fn crc32c_table(data: &[u8]) -> u32 {
    let t = table();
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    !crc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut crc = !0u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(c.try_into().unwrap()));
    }
    let mut crc = crc as u32;
    for &b in chunks.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    !crc
}

pub fn crc32c(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, checked just above.
            return unsafe { crc32c_sse42(data) };
        }
    }
    crc32c_table(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_values() {
        // RFC 3720 B.4: 32 bytes of zeros, and the ASCII digits.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_table(b"123456789"), 0xE306_9283);
    }
}
