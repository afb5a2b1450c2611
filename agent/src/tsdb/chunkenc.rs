//! Compressed float chunks: Gorilla (Facebook, VLDB 2015) as in Prometheus'
//! `chunkenc` XOR encoding for values, with a jitter-friendly timestamp code,
//! plus an integer value code for chunks whose values are all integers.
//!
//! Layout of a chunk: a 2-byte big-endian sample count, then a bit stream
//! (an integer chunk starts it with one mode bit, see below):
//! - sample 0: zig-zag varint timestamp, then the first value (64 raw bits
//!   in XOR chunks, a zig-zag varint in integer chunks);
//! - sample 1: zig-zag varint timestamp delta, then the value code;
//! - sample n: timestamp delta minus the chunk's *nominal interval*, in a
//!   prefix-coded bucket, then the value code.
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
//!
//! Integer chunks ([`ENCODING_INT`]) exist because most series are counters
//! and histogram buckets: integers stored as floats, for which XOR costs
//! 13-23 bits per sample once they move, while the difference of successive
//! increments of a counter fits in a few bits. An integer chunk stores, per
//! sample, either the value delta (mode 0, for gauges) or the delta of
//! deltas (mode 1, for counters), divided by a power of two that divides
//! every change (a 6-bit shift after the mode bit: byte gauges that move in
//! 4 KiB pages lose 12 zero bits), in the same prefix-coded buckets as the
//! timestamps (`0`; `10`+4, `110`+8, `1110`+16, `11110`+32, `111110`+64
//! bits); `111111` + 64 raw bits escapes a NaN (a staleness marker) without
//! disturbing the integer state. A series' first chunk is XOR; the head
//! starts an integer chunk when the first value is an integer and the
//! previous chunk held only integers (and NaNs) and would have cost less so
//! than in XOR; mode and shift are learnt from the previous chunk too. A value that does not fit (a fraction, a
//! change not a multiple of the shift) cuts the chunk early.

use super::bstream::{BitReader, BitWriter};
use super::packed::{PackedDec, ENCODING_PACKED};

/// Encoding byte for XOR float chunks in chunk files.
pub const ENCODING_XOR: u8 = 1;
/// Encoding byte for integer-valued chunks.
pub const ENCODING_INT: u8 = 2;

/// Samples per chunk before the head cuts a new one (as in Prometheus).
pub const SAMPLES_PER_CHUNK: u16 = 120;

const NO_WINDOW: u8 = 0xff;

/// Buckets for `delta - nominal`: payload bits per prefix of 1..=6 ones.
const T_BUCKETS: [u32; 6] = [2, 4, 7, 14, 20, 64];
/// Buckets for integer value differences (prefixes of 1..=5 ones); six
/// ones is the raw-float escape.
const V_BUCKETS: [u32; 5] = [4, 8, 16, 32, 64];
const MAX_ONES: u32 = 6;

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

/// The nominal interval as stored in encoder and decoder state (i32 keeps
/// the head's per-series chunk state small; an interval beyond ±24 days
/// is not a scrape interval, and 0 then just means "plain deltas").
fn chunk_base(delta: i64) -> i32 {
    i32::try_from(nominal_interval(delta)).unwrap_or(0)
}

fn fits(d: i64, bits: u32) -> bool {
    bits >= 64 || (d > -(1i64 << (bits - 1)) && d <= 1i64 << (bits - 1))
}

/// Is `v` an integer an integer chunk can hold exactly (not -0.0)?
pub fn is_integral(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() <= (1u64 << 53) as f64 && !(v == 0.0 && v.is_sign_negative())
}

/// Writes `ones` one-bits, then a zero unless `ones` is the maximum.
fn write_prefix(w: &mut BitWriter, ones: u32) {
    let all = (1u64 << ones) - 1;
    if ones >= MAX_ONES {
        w.write_bits(all, ones);
    } else {
        w.write_bits(all << 1, ones + 1);
    }
}

/// Writes `d` in the smallest bucket of `buckets` (`0` for zero).
fn write_bucketed(w: &mut BitWriter, d: i64, buckets: &[u32]) {
    if d == 0 {
        w.write_bit(false);
        return;
    }
    for (i, &bits) in buckets.iter().enumerate() {
        if fits(d, bits) {
            write_prefix(w, i as u32 + 1);
            w.write_bits(d as u64, bits);
            return;
        }
    }
}

/// Bits [`write_bucketed`] would spend on `d` with the value buckets.
fn bucket_cost(d: i64) -> u32 {
    if d == 0 {
        return 1;
    }
    V_BUCKETS
        .iter()
        .enumerate()
        .find(|(_, &bits)| fits(d, bits))
        .map_or(70, |(i, &bits)| i as u32 + 2 + bits)
}

fn read_prefix(r: &mut BitReader<'_>) -> Option<u32> {
    let mut ones = 0;
    while ones < MAX_ONES && r.read_bit()? {
        ones += 1;
    }
    Some(ones)
}

/// What the next chunk's encoding should be, learned from this one: did it
/// hold only integers (and NaNs), what power of two divides every change,
/// and what each encoding would have cost.
#[derive(Debug, Clone, Copy)]
struct IntStats {
    all_int: bool,
    /// Fewest trailing zero bits of a non-zero value change.
    tz: u8,
    xlead: u8,
    xtrail: u8,
    n: u16,
    // Bit costs; u16 holds 120 samples at the 70-bit worst case.
    cost_delta: u16,
    cost_dod: u16,
    /// XOR cost, simulated with Gorilla's window rule.
    cost_xor: u16,
    pv: i64,
    pd: i64,
    xv: u64,
}

impl IntStats {
    fn new() -> IntStats {
        IntStats {
            all_int: true,
            n: 0,
            pv: 0,
            pd: 0,
            tz: 63,
            cost_delta: 0,
            cost_dod: 0,
            cost_xor: 0,
            xv: 0,
            xlead: NO_WINDOW,
            xtrail: 0,
        }
    }

    fn observe(&mut self, v: f64, first: bool) {
        let b = v.to_bits();
        if !first {
            let x = b ^ self.xv;
            let c = if x == 0 {
                1
            } else {
                let lead = (x.leading_zeros() as u8).min(31);
                let trail = x.trailing_zeros() as u8;
                if self.xlead != NO_WINDOW && lead >= self.xlead && trail >= self.xtrail {
                    2 + 64 - self.xlead as u32 - self.xtrail as u32
                } else {
                    self.xlead = lead;
                    self.xtrail = trail;
                    13 + 64 - lead as u32 - trail as u32
                }
            };
            self.cost_xor = self.cost_xor.saturating_add(c as u16);
        }
        self.xv = b;
        if !self.all_int {
            return;
        }
        if v.is_nan() {
            self.cost_delta = self.cost_delta.saturating_add(70);
            self.cost_dod = self.cost_dod.saturating_add(70);
            return;
        }
        if !is_integral(v) {
            self.all_int = false;
            return;
        }
        let iv = v as i64;
        if self.n >= 1 {
            let d = iv.wrapping_sub(self.pv);
            if d != 0 {
                self.tz = self.tz.min(d.trailing_zeros() as u8);
            }
            if self.n >= 2 {
                let s = self.tz;
                self.cost_delta = self.cost_delta.saturating_add(bucket_cost(d >> s) as u16);
                self.cost_dod = self
                    .cost_dod
                    .saturating_add(bucket_cost((d >> s).wrapping_sub(self.pd >> s)) as u16);
            }
            self.pd = d;
        }
        self.pv = iv;
        self.n = self.n.saturating_add(1);
    }
}

/// An append-only chunk being built (XOR or integer encoding).
#[derive(Debug, Clone)]
pub struct Chunk {
    w: BitWriter,
    num: u16,
    enc: u8,
    /// Integer chunks: delta-of-delta (true) or delta (false) values.
    dod: bool,
    /// Integer chunks: every value change is a multiple of `1 << shift`
    /// and is stored divided by it (byte gauges move in whole pages).
    shift: u8,
    t: i64,
    /// Nominal interval (see the module docs), set by the second sample.
    base: i32,
    /// Last value bits (every encoding: the series' last value), and in
    /// XOR chunks the leading/trailing-zero window.
    v: u64,
    leading: u8,
    trailing: u8,
    /// Integer state: last integer value and last integer delta.
    iv: i64,
    id: i64,
    int_n: u16,
}

impl Chunk {
    /// An empty chunk with `enc` ([`ENCODING_XOR`] or [`ENCODING_INT`]; an
    /// integer chunk in delta-of-delta mode if `dod`).
    pub fn new(enc: u8, dod: bool) -> Chunk {
        Chunk::with_capacity(enc, dod, 0, 128)
    }

    /// As [`Chunk::new`] with a value shift (integer chunks, 0..=63) and a
    /// buffer of `cap` bytes to start with.
    pub fn with_capacity(enc: u8, dod: bool, shift: u32, cap: usize) -> Chunk {
        let mut w = BitWriter::with_capacity(cap.max(3));
        w.write_byte(0);
        w.write_byte(0);
        let enc = if enc == ENCODING_INT {
            ENCODING_INT
        } else {
            ENCODING_XOR
        };
        let shift = shift.min(63) as u8;
        if enc == ENCODING_INT {
            w.write_bit(dod);
            w.write_bits(shift as u64, 6);
        }
        Chunk {
            w,
            num: 0,
            enc,
            dod,
            shift,
            t: 0,
            base: 0,
            v: 0,
            leading: NO_WINDOW,
            trailing: 0,
            iv: 0,
            id: 0,
            int_n: 0,
        }
    }

    /// A series' first chunk: XOR, since nothing is known about the values
    /// yet (an integer chunk with the wrong mode or shift can cost more).
    pub fn first(_v: f64, cap: usize) -> Chunk {
        Chunk::with_capacity(ENCODING_XOR, false, 0, cap)
    }

    /// The chunk to cut to after this one, starting with value `v`: the
    /// cheapest encoding on this chunk's data, if `v` fits it.
    pub fn successor(&self, v: f64, cap: usize) -> Chunk {
        // Learnt by decoding the chunk once at the cut rather than tracked
        // per append: the head keeps one open chunk per series, and 40
        // bytes of running statistics in each cost more than a decode of
        // 120 samples every 120 appends.
        let mut st = IntStats::new();
        for (i, (_, x)) in self.iter().enumerate() {
            st.observe(x, i == 0);
        }
        let st = &st;
        let int_cost = st.cost_delta.min(st.cost_dod);
        if !is_integral(v) || !st.all_int || st.cost_xor < int_cost {
            return Chunk::with_capacity(ENCODING_XOR, false, 0, cap);
        }
        let mut shift = if st.n >= 2 { st.tz as u32 } else { 0 };
        let d = (v as i64).wrapping_sub(st.pv);
        if st.n >= 1 && d != 0 {
            shift = shift.min(d.trailing_zeros());
        }
        Chunk::with_capacity(ENCODING_INT, st.cost_dod < st.cost_delta, shift, cap)
    }

    pub fn encoding(&self) -> u8 {
        self.enc
    }

    /// Can `v` go into this chunk? Integer chunks take NaNs and integers
    /// whose change is a multiple of the chunk's `1 << shift`.
    pub fn can_append(&self, v: f64) -> bool {
        if self.enc == ENCODING_XOR || v.is_nan() {
            return true;
        }
        is_integral(v)
            && (self.int_n == 0
                || (v as i64).wrapping_sub(self.iv).trailing_zeros() >= self.shift as u32)
    }

    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// Timestamp of the last sample (meaningless when empty).
    pub fn last_t(&self) -> i64 {
        self.t
    }

    /// Value of the last sample, bit-exact (meaningless when empty).
    pub fn last_v(&self) -> f64 {
        f64::from_bits(self.v)
    }

    /// The encoded chunk, readable by [`ChunkIter`] at any point.
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

    /// Appends a sample. The caller keeps timestamps increasing and checks
    /// [`Chunk::can_append`]; a full chunk (u16::MAX samples) or a value the
    /// encoding cannot hold is silently refused.
    pub fn append(&mut self, t: i64, v: f64) {
        if self.num == u16::MAX
            || !self.can_append(v)
            || (self.num == 0 && self.enc == ENCODING_INT && v.is_nan())
        {
            return;
        }
        match self.num {
            0 => self.w.write_varint(t),
            1 => {
                let delta = t.wrapping_sub(self.t);
                self.w.write_varint(delta);
                self.base = chunk_base(delta);
            }
            _ => {
                let d = t.wrapping_sub(self.t).wrapping_sub(self.base as i64);
                write_bucketed(&mut self.w, d, &T_BUCKETS);
            }
        }
        if self.enc == ENCODING_INT {
            self.write_int(v);
            self.v = v.to_bits();
        } else {
            self.write_xor(v.to_bits());
        }
        self.t = t;
        self.num += 1;
        let n = self.num.to_be_bytes();
        let b = self.w.bytes_mut();
        b[0] = n[0];
        b[1] = n[1];
    }

    fn write_int(&mut self, v: f64) {
        if v.is_nan() {
            write_prefix(&mut self.w, MAX_ONES);
            self.w.write_bits(v.to_bits(), 64);
            return;
        }
        let iv = v as i64;
        if self.int_n == 0 {
            self.w.write_varint(iv);
        } else {
            // Exact: can_append checked the low `shift` bits are zero.
            let delta = iv.wrapping_sub(self.iv) >> self.shift;
            let d = if self.dod && self.int_n >= 2 {
                delta.wrapping_sub(self.id)
            } else {
                delta
            };
            write_bucketed(&mut self.w, d, &V_BUCKETS);
            self.id = delta;
        }
        self.iv = iv;
        self.int_n = self.int_n.saturating_add(1);
    }

    fn write_xor(&mut self, vbits: u64) {
        if self.num == 0 {
            self.w.write_bits(vbits, 64);
            self.v = vbits;
            return;
        }
        let x = vbits ^ self.v;
        self.v = vbits;
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

    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(self.enc, self.bytes())
    }
}

/// Decodes a chunk's samples. Corrupt input ends the iteration early and
/// sets [`ChunkIter::error`]; it never panics.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    enc: u8,
    dod: bool,
    shift: u8,
    total: u16,
    read: u16,
    t: i64,
    base: i32,
    v: u64,
    leading: u8,
    trailing: u8,
    iv: i64,
    id: i64,
    int_n: u16,
    error: bool,
    /// Packed chunks (blocks only): their decoder state.
    packed: Option<Box<PackedDec>>,
}

impl<'a> ChunkIter<'a> {
    pub fn new(enc: u8, chunk: &'a [u8]) -> ChunkIter<'a> {
        let (total, mut error, body) = match chunk {
            [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), false, rest),
            _ => (0, true, &[][..]),
        };
        let mut r = BitReader::new(body);
        let (mut dod, mut shift) = (false, 0);
        let mut packed = None;
        match enc {
            ENCODING_XOR => {}
            ENCODING_PACKED if total > 0 => match PackedDec::new(&mut r) {
                Some(p) => packed = Some(Box::new(p)),
                None => error = true,
            },
            ENCODING_PACKED => error = true,
            ENCODING_INT => match (r.read_bit(), r.read_bits(6)) {
                (Some(b), Some(s)) => (dod, shift) = (b, s as u8),
                _ => error = true,
            },
            _ => error = true,
        }
        ChunkIter {
            r,
            enc,
            dod,
            shift,
            total,
            read: 0,
            t: 0,
            base: 0,
            v: 0,
            leading: NO_WINDOW,
            trailing: 0,
            iv: 0,
            id: 0,
            int_n: 0,
            error,
            packed,
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
        if let Some(p) = &mut self.packed {
            return p.next(&mut self.r, self.read);
        }
        match self.read {
            0 => self.t = self.r.read_varint()?,
            1 => {
                let delta = self.r.read_varint()?;
                self.t = self.t.wrapping_add(delta);
                self.base = chunk_base(delta);
            }
            _ => {
                let d = match read_prefix(&mut self.r)? {
                    0 => 0,
                    n => {
                        let bits = T_BUCKETS[n as usize - 1];
                        sign_extend(self.r.read_bits(bits)?, bits)
                    }
                };
                self.t = self.t.wrapping_add(self.base as i64).wrapping_add(d);
            }
        }
        let v = if self.enc == ENCODING_INT {
            self.read_int()?
        } else {
            self.read_xor()?;
            f64::from_bits(self.v)
        };
        Some((self.t, v))
    }

    fn read_int(&mut self) -> Option<f64> {
        if self.int_n == 0 {
            if self.read != 0 {
                return None;
            }
            self.iv = self.r.read_varint()?;
            self.int_n = 1;
            return Some(self.iv as f64);
        }
        let d = match read_prefix(&mut self.r)? {
            0 => 0,
            MAX_ONES => return Some(f64::from_bits(self.r.read_bits(64)?)),
            n => {
                let bits = V_BUCKETS[n as usize - 1];
                sign_extend(self.r.read_bits(bits)?, bits)
            }
        };
        let delta = if self.dod && self.int_n >= 2 {
            d.wrapping_add(self.id)
        } else {
            d
        };
        self.iv = self.iv.wrapping_add(delta.wrapping_shl(self.shift as u32));
        self.id = delta;
        self.int_n = self.int_n.saturating_add(1);
        Some(self.iv as f64)
    }

    fn read_xor(&mut self) -> Option<()> {
        if self.read == 0 {
            self.v = self.r.read_bits(64)?;
            return Some(());
        }
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

impl Iterator for ChunkIter<'_> {
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

    fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
        samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    }

    /// Encodes like the head does (cut at 120 samples or when the value
    /// does not fit, picking each next encoding) and decodes again.
    fn round_trip(samples: &[(i64, f64)]) -> Vec<Chunk> {
        let mut chunks: Vec<Chunk> = Vec::new();
        for &(t, v) in samples {
            let cut = match chunks.last() {
                None => true,
                Some(c) => c.num_samples() >= SAMPLES_PER_CHUNK || !c.can_append(v),
            };
            if cut {
                let next = match chunks.last() {
                    None => Chunk::first(v, 16),
                    Some(c) => c.successor(v, 16),
                };
                chunks.push(next);
            }
            let c = chunks.last_mut().unwrap();
            let n = c.num_samples();
            c.append(t, v);
            assert_eq!(c.num_samples(), n + 1);
        }
        let mut got = Vec::new();
        for c in &chunks {
            let mut it = ChunkIter::new(c.encoding(), c.bytes());
            got.extend(it.by_ref());
            assert!(!it.error());
        }
        assert_eq!(bits(&got), bits(samples));
        // Forced XOR encodes anything.
        let mut x = Chunk::new(ENCODING_XOR, false);
        for &(t, v) in samples.iter().take(1000) {
            x.append(t, v);
        }
        assert_eq!(
            bits(&x.iter().collect::<Vec<_>>()),
            bits(&samples[..samples.len().min(1000)])
        );
        chunks
    }

    const SPECIALS: [f64; 10] = [
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

    #[test]
    fn random_round_trips() {
        let mut seed = 42;
        for _ in 0..300 {
            let n = (rng(&mut seed) % 400) as usize + 1;
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
                v = match (r >> 16) % 8 {
                    0 | 6 => v,
                    1 | 7 => v + ((r >> 20) % 1000) as f64,
                    2 => f64::from_bits(rng(&mut seed)),
                    3 => SPECIALS[(r >> 24) as usize % SPECIALS.len()],
                    4 => (r >> 30) as f64 / 7.0,
                    _ => -v,
                };
                samples.push((t, v));
            }
            round_trip(&samples);
        }
    }

    #[test]
    fn integer_series_use_integer_chunks() {
        let mut seed = 5;
        // A counter with stale markers in the middle, and huge integers.
        let mut v = 1e6;
        let mut samples = Vec::new();
        for i in 0..1000i64 {
            v += (rng(&mut seed) % 40) as f64;
            let x = if i % 97 == 50 {
                f64::from_bits(STALE_NAN_BITS)
            } else {
                v
            };
            samples.push((i * 15_000 + (i * 7) % 5, x));
        }
        samples.push((2_000_000_000, (1u64 << 53) as f64));
        samples.push((2_000_015_000, -((1u64 << 53) as f64)));
        samples.push((2_000_030_000, 0.0));
        let chunks = round_trip(&samples);
        assert_eq!(chunks[0].encoding(), ENCODING_XOR, "first chunks are XOR");
        assert!(chunks.iter().skip(1).all(|c| c.encoding() == ENCODING_INT));
        assert!(chunks[1].dod, "a counter picks delta-of-delta");
        let bytes: usize = chunks.iter().map(|c| c.bytes().len()).sum();
        let mut xor = Chunk::new(ENCODING_XOR, false);
        samples.iter().for_each(|&(t, v)| xor.append(t, v));
        assert!(
            bytes * 4 < xor.bytes().len() * 3,
            "{bytes} vs {} bytes in XOR",
            xor.bytes().len()
        );

        // A gauge that turns fractional goes on in XOR, and stays there.
        let mut samples: Vec<(i64, f64)> = (0..200).map(|i| (i * 1000, (i % 7) as f64)).collect();
        samples.extend((200..500).map(|i| (i * 1000, i as f64 / 3.0)));
        let chunks = round_trip(&samples);
        assert_eq!(chunks[1].encoding(), ENCODING_INT);
        assert!(chunks.iter().skip(2).all(|c| c.encoding() == ENCODING_XOR));
        // Page-sized steps are shifted out; an odd step cuts the chunk.
        let mut pages = 30_000i64;
        let mut samples: Vec<(i64, f64)> = (0..600)
            .map(|i| {
                pages += (rng(&mut seed) % 61) as i64 - 30;
                (i * 15_000, (pages * 4096) as f64)
            })
            .collect();
        samples[400].1 += 1.0;
        let chunks = round_trip(&samples);
        assert!(chunks
            .iter()
            .any(|c| c.encoding() == ENCODING_INT && c.shift == 12));
        // -0.0 and huge values are not integers for this purpose.
        assert!(!is_integral(-0.0) && !is_integral(1e300) && !is_integral(f64::INFINITY));
        assert!(is_integral(0.0) && is_integral(-5.0));
    }

    #[test]
    fn bucket_edges() {
        let mut samples = vec![(0, 1.0), (15_000, 1.0)];
        let mut t = 15_000;
        let mut v = 1i64;
        let edges = [
            0,
            1,
            -1,
            2,
            -2,
            3,
            8,
            -7,
            9,
            -8,
            64,
            -63,
            65,
            -64,
            128,
            -127,
            129,
            -128,
            8192,
            -8191,
            8193,
            -8192,
            32768,
            -32767,
            32769,
            -32768,
            524288,
            -524287,
            524289,
            -524288,
            1 << 31,
            -(1 << 31) + 1,
            1 << 32,
            1 << 40,
        ];
        for d in edges {
            t += 15_000 + d;
            v += d;
            samples.push((t, v as f64));
            samples.push((t + 15_000, v as f64));
            t += 15_000;
        }
        round_trip(&samples);
        // A first delta that is not near whole seconds is its own nominal.
        round_trip(&[(0, 1.0), (1234, 1.0), (2468, 1.0), (3703, 1.0)]);
        round_trip(&[(i64::MIN, 0.0), (i64::MAX, 1.0), (0, 2.0)]);
        assert_eq!(nominal_interval(15_002), 15_000);
        assert_eq!(nominal_interval(14_950), 15_000);
        assert_eq!(nominal_interval(15_400), 15_400);
        assert_eq!(nominal_interval(250), 250);
    }

    #[test]
    fn regular_scrapes_are_small() {
        let mut c = Chunk::new(ENCODING_XOR, false);
        for i in 0..120 {
            c.append(1_700_000_000_000 + i * 15_000, 1.0);
        }
        // 2 header + ~10 first sample + 2 bits per later sample.
        assert!(c.bytes().len() < 50, "{}", c.bytes().len());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7;
        for _ in 0..4000 {
            let n = (rng(&mut seed) % 64) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng(&mut seed) as u8).collect();
            for enc in [ENCODING_XOR, ENCODING_INT, 9] {
                let count = ChunkIter::new(enc, &bytes).count();
                assert!(count <= u16::MAX as usize);
            }
        }
        // A truncated valid chunk reports an error.
        for enc in [ENCODING_XOR, ENCODING_INT] {
            let mut c = Chunk::new(enc, true);
            for i in 0..50 {
                c.append(i * 1000, (i * i) as f64);
            }
            let b = &c.bytes()[..c.bytes().len() / 2];
            let mut it = ChunkIter::new(enc, b);
            let n = it.by_ref().count();
            assert!(n < 50);
            assert!(it.error());
        }
    }
}
