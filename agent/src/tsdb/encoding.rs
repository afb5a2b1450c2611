//! Byte-level encoding helpers shared by the WAL records and the block
//! index: varints, fixed-width little-endian integers, length-prefixed
//! strings, and a bounds-checked decoder that turns every short or garbled
//! input into an error (never a panic or an out-of-bounds slice).

use anyhow::{bail, Result};

pub fn put_uvarint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

pub fn put_varint(b: &mut Vec<u8>, v: i64) {
    put_uvarint(b, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads an unsigned varint off the front of `b` (None when `b` ends
/// first or the value overflows 64 bits): for the head's in-memory
/// varint lists, where a `Decbuf` and its error would be overhead.
pub fn take_uvarint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0u32;
    loop {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= ((byte & 0x7f) as u64).checked_shl(shift)?;
        if byte < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
}

pub fn put_str(b: &mut Vec<u8>, s: &str) {
    put_uvarint(b, s.len() as u64);
    b.extend_from_slice(s.as_bytes());
}

/// A cursor over bytes read from disk.
#[derive(Debug, Clone)]
pub struct Decbuf<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Decbuf<'a> {
    pub fn new(b: &'a [u8]) -> Decbuf<'a> {
        Decbuf { b, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            bail!(
                "unexpected end of data: need {n} bytes, {} left",
                self.remaining()
            );
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u32_le(&mut self) -> Result<u32> {
        let s = self.bytes(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub fn u64_le(&mut self) -> Result<u64> {
        let s = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    pub fn uvarint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                bail!("varint overflows 64 bits");
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                bail!("varint too long");
            }
        }
    }

    pub fn varint(&mut self) -> Result<i64> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A uvarint that must fit `usize` and not exceed `max`.
    pub fn read_len(&mut self, max: usize) -> Result<usize> {
        let n = self.uvarint()?;
        if n > max as u64 {
            bail!("length {n} exceeds limit {max}");
        }
        Ok(n as usize)
    }

    pub fn str(&mut self) -> Result<&'a str> {
        let n = self.read_len(self.remaining())?;
        let b = self.bytes(n)?;
        std::str::from_utf8(b).map_err(|e| anyhow::anyhow!("invalid UTF-8 string: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut b = Vec::new();
        put_uvarint(&mut b, u64::MAX);
        put_varint(&mut b, i64::MIN);
        put_str(&mut b, "héllo");
        b.extend_from_slice(&7u32.to_le_bytes());
        let mut d = Decbuf::new(&b);
        assert_eq!(d.uvarint().unwrap(), u64::MAX);
        assert_eq!(d.varint().unwrap(), i64::MIN);
        assert_eq!(d.str().unwrap(), "héllo");
        assert_eq!(d.u32_le().unwrap(), 7);
        assert!(d.u8().is_err());
        assert!(Decbuf::new(&[0xff; 11]).uvarint().is_err());
        assert!(Decbuf::new(&[5, b'a']).str().is_err());
    }
}
