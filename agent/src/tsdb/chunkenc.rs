//! Compressed float chunks: Gorilla (Facebook, VLDB 2015) as in Prometheus'
//! `chunkenc` XOR encoding for values, with a jitter-friendly timestamp code.
//!
//! Layout of a chunk: a 2-byte big-endian sample count, then a bit stream:
//! - sample 0: zig-zag varint timestamp, 64 raw value bits;
//! - sample 1: zig-zag varint timestamp delta, XOR-encoded value;
//! - sample n: timestamp delta minus the chunk's *nominal interval*, in a
//!   prefix-coded bucket, then the XOR-encoded value.
//!
//! Timestamps differ from Prometheus' delta-of-delta on purpose. Scrape
//! timestamps jitter by a millisecond or two around a whole-second
//! interval; delta-of-delta doubles that noise and Prometheus' smallest
//! non-zero bucket costs 16 bits. Here the first delta, rounded to whole
//! seconds when it is within 100 ms of them, is the nominal interval
//! (derived identically by the decoder, so it costs nothing), each later
//! delta is stored as its difference from it, and small differences have
//! small buckets:
//!
//! | prefix   | payload | delta − nominal      |
//! |----------|---------|----------------------|
//! | `0`      | -       | 0                    |
//! | `10`     | 2 bits  | -1 ..= 2             |
//! | `110`    | 4 bits  | -7 ..= 8             |
//! | `1110`   | 7 bits  | -63 ..= 64           |
//! | `11110`  | 14 bits | -8191 ..= 8192       |
//! | `111110` | 20 bits | -524287 ..= 524288   |
//! | `111111` | 64 bits | anything             |
//!
//! With ±2 ms jitter this costs ~5.5 bits per timestamp instead of ~15 with
//! Prometheus' encoding, and a perfectly regular series still costs 1 bit.
//! A missed scrape or a one-off slow scrape costs one larger bucket, not the
//! two or three that delta-of-delta pays.
//!
//! Values are stored bit-exactly (NaN payloads, infinities and the staleness
//! marker survive a round trip): XOR with the previous value, `0` when equal,
//! `10` + meaningful bits when they fit the previous leading/trailing-zero
//! window, else `11` + 5 bits leading zeros + 6 bits length + the bits.

use super::bstream::{BitReader, BitWriter};

/// Encoding byte for XOR float chunks in chunk files.
pub const ENCODING_XOR: u8 = 1;

/// Samples per chunk before the head cuts a new one (as in Prometheus).
pub const SAMPLES_PER_CHUNK: u16 = 120;

const NO_WINDOW: u8 = 0xff;

/// An append-only XOR chunk being built.
#[derive(Debug, Clone)]
pub struct XorChunk {
    w: BitWriter,
    num: u16,
    t: i64,
    v: u64,
    /// Nominal interval (see the module docs), set by the second sample.
    base: i64,
    leading: u8,
    trailing: u8,
}

/// Buckets for `delta - nominal`: (prefix length, payload bits). The prefix
/// is `1` repeated `len - 1` times then `0`, except the last, all ones.
const BUCKETS: [(u32, u32); 6] = [(2, 2), (3, 4), (4, 7), (5, 14), (6, 20), (6, 64)];

/// The nominal scrape interval derived from a chunk's first delta.
pub fn nominal_interval(delta: i64) -> i64 {
    if delta >= 1000 {
        let r = delta.saturating_add(500) / 1000 * 1000;
        if (delta - r).abs() <= 100 {
            return r;
        }
    }
    delta
}

fn fits(d: i64, bits: u32) -> bool {
    bits >= 64 || (d > -(1i64 << (bits - 1)) && d <= 1i64 << (bits - 1))
}

impl Default for XorChunk {
    fn default() -> Self {
        XorChunk::new()
    }
}

impl XorChunk {
    pub fn new() -> XorChunk {
        XorChunk::with_capacity(128)
    }

    /// A chunk whose buffer starts at `cap` bytes (the head sizes it to the
    /// typical full chunk to avoid regrowth).
    pub fn with_capacity(cap: usize) -> XorChunk {
        let mut w = BitWriter::with_capacity(cap.max(2));
        w.write_byte(0);
        w.write_byte(0);
        XorChunk {
            w,
            num: 0,
            t: 0,
            v: 0,
            base: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// Timestamp of the last sample (meaningless when empty).
    pub fn last_t(&self) -> i64 {
        self.t
    }

    /// The encoded chunk, readable by [`XorIter`] at any point.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_bytes()
    }

    /// Bytes allocated for the buffer (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.w.capacity()
    }

    /// Appends a sample. The caller keeps timestamps increasing; a full chunk
    /// (u16::MAX samples) silently refuses more, so the head cuts well before.
    pub fn append(&mut self, t: i64, v: f64) {
        if self.num == u16::MAX {
            return;
        }
        let vbits = v.to_bits();
        match self.num {
            0 => {
                self.w.write_varint(t);
                self.w.write_bits(vbits, 64);
            }
            1 => {
                let delta = t.wrapping_sub(self.t);
                self.w.write_varint(delta);
                self.write_xor(vbits);
                self.base = nominal_interval(delta);
            }
            _ => {
                let d = t.wrapping_sub(self.t).wrapping_sub(self.base);
                if d == 0 {
                    self.w.write_bit(false);
                } else {
                    for (i, &(prefix, bits)) in BUCKETS.iter().enumerate() {
                        if fits(d, bits) {
                            // `prefix - 1` ones, then a zero unless last.
                            let ones = (1u64 << (prefix - 1)) - 1;
                            if i == BUCKETS.len() - 1 {
                                self.w.write_bits((ones << 1) | 1, prefix);
                            } else {
                                self.w.write_bits(ones << 1, prefix);
                            }
                            self.w.write_bits(d as u64, bits);
                            break;
                        }
                    }
                }
                self.write_xor(vbits);
            }
        }
        self.t = t;
        self.v = vbits;
        self.num += 1;
        let n = self.num.to_be_bytes();
        let b = self.w.bytes_mut();
        b[0] = n[0];
        b[1] = n[1];
    }

    fn write_xor(&mut self, vbits: u64) {
        let x = vbits ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && lead >= self.leading && trail >= self.trailing {
            self.w.write_bit(false);
            let sig = 64 - self.leading as u32 - self.trailing as u32;
            self.w.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = lead;
            self.trailing = trail;
            self.w.write_bit(true);
            self.w.write_bits(lead as u64, 5);
            let sig = 64 - lead as u32 - trail as u32;
            // 64 meaningful bits do not fit in 6 bits; 0 stands for 64.
            self.w.write_bits((sig & 63) as u64, 6);
            self.w.write_bits(x >> trail, sig);
        }
    }

    pub fn iter(&self) -> XorIter<'_> {
        XorIter::new(self.bytes())
    }
}

/// Decodes a chunk's samples. Corrupt input ends the iteration early and
/// sets [`XorIter::error`]; it never panics.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    base: i64,
    leading: u8,
    trailing: u8,
    error: bool,
}

impl<'a> XorIter<'a> {
    pub fn new(chunk: &'a [u8]) -> XorIter<'a> {
        let (total, error, body) = match chunk {
            [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), false, rest),
            _ => (0, true, &[][..]),
        };
        XorIter {
            r: BitReader::new(body),
            total,
            read: 0,
            t: 0,
            v: 0,
            base: 0,
            leading: NO_WINDOW,
            trailing: 0,
            error,
        }
    }

    /// Did decoding stop on malformed data?
    pub fn error(&self) -> bool {
        self.error
    }

    /// Number of samples the header claims.
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    fn decode(&mut self) -> Option<(i64, f64)> {
        match self.read {
            0 => {
                self.t = self.r.read_varint()?;
                self.v = self.r.read_bits(64)?;
            }
            1 => {
                let delta = self.r.read_varint()?;
                self.t = self.t.wrapping_add(delta);
                self.base = nominal_interval(delta);
                self.read_xor()?;
            }
            _ => {
                // Prefix: up to 6 ones, ended by a zero unless all six are set.
                let mut ones = 0;
                while ones < 6 && self.r.read_bit()? {
                    ones += 1;
                }
                let d = match ones {
                    0 => 0,
                    n => {
                        let bits = BUCKETS[n - 1].1;
                        sign_extend(self.r.read_bits(bits)?, bits)
                    }
                };
                self.t = self.t.wrapping_add(self.base).wrapping_add(d);
                self.read_xor()?;
            }
        }
        Some((self.t, f64::from_bits(self.v)))
    }

    fn read_xor(&mut self) -> Option<()> {
        if !self.r.read_bit()? {
            return Some(());
        }
        if self.r.read_bit()? {
            let lead = self.r.read_bits(5)? as u8;
            let mut sig = self.r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            if lead as u32 + sig as u32 > 64 {
                return None;
            }
            self.leading = lead;
            self.trailing = 64 - lead - sig;
        } else if self.leading == NO_WINDOW {
            return None;
        }
        let sig = 64 - self.leading as u32 - self.trailing as u32;
        let bits = self.r.read_bits(sig)?;
        self.v ^= bits << self.trailing;
        Some(())
    }
}

/// Interprets the low `n` bits as a bucket value in `-(2^(n-1)-1) ..= 2^(n-1)`.
fn sign_extend(bits: u64, n: u32) -> i64 {
    if n >= 64 {
        return bits as i64;
    }
    if bits > 1 << (n - 1) {
        bits as i64 - (1i64 << n)
    } else {
        bits as i64
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.error || self.read >= self.total {
            return None;
        }
        match self.decode() {
            Some(s) => {
                self.read += 1;
                Some(s)
            }
            None => {
                self.error = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;

    /// splitmix64: deterministic test data without a rand dependency.
    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn round_trip(samples: &[(i64, f64)]) {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        let got: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        assert!(!c.iter().error());
    }

    #[test]
    fn random_round_trips() {
        let mut seed = 42;
        let specials = [
            f64::NAN,
            f64::from_bits(STALE_NAN_BITS),
            f64::from_bits(0x7ff8_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
        ];
        for round in 0..300 {
            let n = (rng(&mut seed) % 200) as usize + 1;
            let mut t = (rng(&mut seed) as i64) >> (rng(&mut seed) % 64);
            let mut v = 0.0f64;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let r = rng(&mut seed);
                t = t.wrapping_add(match r % 5 {
                    0 => 15_000,
                    1 => 15_000 + (r >> 8) as i64 % 100 - 50,
                    2 => (r >> 8) as i64 % 20_000_000,
                    3 => 1,
                    _ => (r >> 3) as i64 & 0x7fff_ffff_ffff,
                });
                v = match (r >> 16) % 6 {
                    0 => v,
                    1 => v + ((r >> 20) % 1000) as f64,
                    2 => f64::from_bits(rng(&mut seed)),
                    3 => specials[(r >> 24) as usize % specials.len()],
                    4 => (r >> 30) as f64 / 7.0,
                    _ => -v,
                };
                samples.push((t, v));
            }
            let _ = round;
            round_trip(&samples);
        }
    }

    #[test]
    fn bucket_edges() {
        let mut samples = vec![(0, 1.0), (1000, 1.0)];
        let mut t = 1000;
        let mut delta = 1000;
        for dod in [
            0,
            64,
            -63,
            65,
            -64,
            8192,
            -8191,
            8193,
            -8192,
            524288,
            -524287,
            524289,
            -524288,
            1 << 40,
        ] {
            delta += dod;
            t += delta;
            samples.push((t, 2.0));
        }
        round_trip(&samples);
        round_trip(&[(i64::MIN, 0.0), (i64::MAX, 1.0), (0, 2.0)]);
    }

    #[test]
    fn regular_scrapes_are_small() {
        let mut c = XorChunk::new();
        for i in 0..120 {
            c.append(1_700_000_000_000 + i * 15_000, 1.0);
        }
        // 2 header + ~10 first sample + 2 bits per later sample.
        assert!(c.bytes().len() < 50, "{}", c.bytes().len());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7;
        for _ in 0..2000 {
            let n = (rng(&mut seed) % 64) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng(&mut seed) as u8).collect();
            let it = XorIter::new(&bytes);
            let count = it.count();
            assert!(count <= u16::MAX as usize);
        }
        // A truncated valid chunk reports an error.
        let mut c = XorChunk::new();
        for i in 0..50 {
            c.append(i * 1000, i as f64 * 1.5);
        }
        let b = &c.bytes()[..c.bytes().len() / 2];
        let mut it = XorIter::new(b);
        let n = it.by_ref().count();
        assert!(n < 50);
        assert!(it.error());
    }
}
