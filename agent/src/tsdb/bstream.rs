//! Bit-level writer and reader for the Gorilla chunk encoding.
//!
//! The XOR encoding spends between 1 and 78 bits per sample, so the chunk is
//! a stream of bits rather than bytes. The writer appends to a `Vec<u8>`
//! whose last byte may be partly filled; the reader never panics on short or
//! garbage input and reports running off the end as `None`, so a corrupt
//! chunk ends its iterator with an error instead of bringing the agent down.

/// Bytes added when a writer's buffer is full.
const GROW_STEP: usize = 32;

/// Appends bits most-significant first.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte of `bytes` (0 = start a new byte).
    free: u8,
}

impl BitWriter {
    pub fn with_capacity(cap: usize) -> BitWriter {
        BitWriter {
            bytes: Vec::with_capacity(cap),
            free: 0,
        }
    }

    /// Continues writing after existing, byte-aligned content.
    pub fn from_bytes(bytes: Vec<u8>) -> BitWriter {
        BitWriter { bytes, free: 0 }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Grows the buffer by a small fixed step instead of doubling: the head
    /// holds one open chunk per series, and doubling would leave up to half
    /// of each unused.
    fn push(&mut self, b: u8) {
        if self.bytes.len() == self.bytes.capacity() {
            self.bytes.reserve_exact(GROW_STEP);
        }
        self.bytes.push(b);
    }

    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << self.free;
        }
    }

    pub fn write_byte(&mut self, b: u8) {
        if self.free == 0 {
            self.push(b);
            return;
        }
        let last = self.bytes.len() - 1;
        self.bytes[last] |= b >> (8 - self.free);
        self.push(b << self.free);
    }

    /// Writes the low `nbits` bits of `v` (0..=64).
    pub fn write_bits(&mut self, v: u64, nbits: u32) {
        if nbits == 0 {
            return;
        }
        let mut u = v << (64 - nbits);
        let mut n = nbits;
        while n >= 8 {
            self.write_byte((u >> 56) as u8);
            u <<= 8;
            n -= 8;
        }
        while n > 0 {
            self.write_bit(u >> 63 == 1);
            u <<= 1;
            n -= 1;
        }
    }

    /// Unsigned LEB128 varint, byte-wise within the bit stream.
    pub fn write_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.write_byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.write_byte(v as u8);
    }

    /// Zig-zag signed varint.
    pub fn write_varint(&mut self, v: i64) {
        self.write_uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Reads bits most-significant first from a byte slice.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits from the start of `bytes`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader { bytes, pos: 0 }
    }

    pub fn read_bit(&mut self) -> Option<bool> {
        let b = *self.bytes.get(self.pos / 8)?;
        let bit = (b >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    /// Reads `nbits` (0..=64) bits as the low bits of a u64.
    pub fn read_bits(&mut self, nbits: u32) -> Option<u64> {
        let mut v: u64 = 0;
        let mut left = nbits;
        while left > 0 {
            let b = *self.bytes.get(self.pos / 8)? as u64;
            let off = (self.pos % 8) as u32;
            let avail = 8 - off;
            let take = avail.min(left);
            let bits = (b >> (avail - take)) & ((1u64 << take) - 1);
            v = if take == 64 { bits } else { (v << take) | bits };
            self.pos += take as usize;
            left -= take;
        }
        Some(v)
    }

    pub fn read_byte(&mut self) -> Option<u8> {
        self.read_bits(8).map(|v| v as u8)
    }

    pub fn read_uvarint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.read_byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    pub fn read_varint(&mut self) -> Option<i64> {
        let u = self.read_uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        let mut w = BitWriter::default();
        let items: Vec<(u64, u32)> = (0..=64u32)
            .map(|n| {
                let v = 0xdead_beef_cafe_f00du64.rotate_left(n);
                (if n == 64 { v } else { v & ((1u64 << n) - 1) }, n)
            })
            .collect();
        for &(v, n) in &items {
            w.write_bit(n % 3 == 0);
            w.write_bits(v, n);
            w.write_varint(-(n as i64) * 1000);
        }
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &items {
            assert_eq!(r.read_bit(), Some(n % 3 == 0));
            assert_eq!(r.read_bits(n), Some(v), "n={n}");
            assert_eq!(r.read_varint(), Some(-(n as i64) * 1000));
        }
    }

    #[test]
    fn reading_past_the_end_is_none() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.read_bits(8), Some(0xff));
        assert_eq!(r.read_bit(), None);
        assert_eq!(BitReader::new(&[0x80, 0x80]).read_uvarint(), None);
    }
}
