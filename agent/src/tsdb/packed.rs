//! Packed chunks ([`ENCODING_PACKED`]): the encoding compaction writes into
//! blocks. The head encodes sample by sample without knowing what comes
//! next (see `chunkenc.rs`); a block's chunk is written once, with all its
//! samples at hand, so every parameter of the code can be fitted to the
//! data and stored in the chunk header, and a chunk can span up to
//! [`MAX_PACKED_SAMPLES`] (a series' whole 2 h block range at 15 s is 480)
//! instead of 120 samples, which spreads the per-chunk header, framing and
//! index entry over four times as many samples.
//!
//! Layout: a 2-byte big-endian sample count (as every chunk), then a bit
//! stream:
//!
//! ```text
//! version 1:
//! t0 varint | N varint (nominal interval: median delta) | tmode 1 bit | time stream header
//! vkind 1 bit:
//!   0 (XOR)     first value 64 raw bits                  then per sample: Gorilla XOR
//!   1 (integer) bits 1 bit | dod 1 bit | shift 6 bits | D varint
//!               | first value (raw 1 bit: 64 bits, else varint) | value stream header
//! per sample 1..n: time symbol, then value (XOR code or value stream symbol)
//!
//! version 2 (decimal values):
//! t0 varint | N varint | tmode 1 bit | 0b11 | ext 4 bits (1: decimal) | places 4 bits
//! | time stream header | dod 1 bit | shift 6 bits | D varint
//! | first value (raw 1 bit: 64 bits, else varint) | value stream header | samples as above
//! ```
//!
//! Version 2 is told apart in-band: its `0b11` stands where version 1 has
//! the time stream's 2-bit mode tag, whose value 3 no version 1 chunk
//! holds. (The encoding byte stays 3: the byte's dispatch lives in the
//! head's `chunkenc.rs`.) So every version 1 chunk in an older block reads
//! as before, and the encoder still writes version 1 unless decimals win.
//!
//! Timestamps are residuals against a prediction: `tmode` 0 predicts
//! `t[i-1] + N`; `tmode` 1 predicts the scrape grid `g + N`, where `g`
//! advances by `N` and is re-anchored to the sample when the residual
//! exceeds `N/2` (a missed scrape). Scrape timestamps are a fixed schedule
//! plus independent jitter, so the grid residual is the jitter itself, not
//! the difference of two jitters that a delta sees.
//!
//! Integer values (counters, histogram buckets, integer gauges) are stored
//! as residuals of their change, divided by `1 << shift` (the largest
//! power of two dividing every change): `dod` 0 predicts the chunk's median
//! change `D` (a counter's typical increment; for a Poisson counter the
//! residual has half the variance of a delta of deltas), `dod` 1 predicts
//! the previous change. A value that is not an integer (a staleness NaN,
//! a fraction) is escaped as 64 raw bits and leaves the integer state
//! alone. With `bits` set, the integers are the floats' IEEE 754 bit
//! patterns instead: a float counter (a histogram's `_sum`) climbs within
//! one binade, where the bit pattern grows almost linearly, so its change
//! minus the median change needs ~10 bits fewer than Gorilla's XOR. In a
//! version 2 chunk the integers are the values times `10^places`: many
//! gauges and float counters are printed by their exporter as short
//! decimals (`queue_depth 53.417`, `_sum 1234.567`), whose nearest doubles
//! share no bits from one sample to the next, so XOR spends ~50 bits on
//! each, while their decimal steps are small integers. A value is kept as
//! a decimal only if `i as f64 / 10^places` gives back its exact bits
//! (else it is escaped), so decoding is bit-exact. The encoder computes the
//! cost of every variant (XOR included) and keeps the cheapest.
//!
//! A stream of residuals (zig-zag integers) has one of three modes, chosen
//! by exact cost: `0` all zero (no bits per sample: perfectly regular
//! timestamps, an idle counter), `1` dense Rice code with parameters `k`
//! and `q_max` (`q = z >> k` in unary, then `k` low bits; from `q_max` on,
//! an Elias-gamma escape, see [`Code`]), `2` sparse: run lengths of zeros,
//! each followed by one non-zero residual, with their own codes (an idle counter, timestamps that are on
//! the grid except for an occasional slow scrape).

use super::bstream::{BitReader, BitWriter};
use super::chunkenc::is_integral;

/// Encoding byte for packed chunks in block chunk files.
pub const ENCODING_PACKED: u8 = 3;

/// Most samples in one packed chunk (a query decodes whole chunks).
pub const MAX_PACKED_SAMPLES: usize = 2048;

const NO_WINDOW: u8 = 0xff;

/// One residual: a zig-zag integer, or a raw float escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    Int(u64),
    Raw(u64),
}

fn zz(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzz(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn bitlen(z: u64) -> u64 {
    (64 - z.leading_zeros() as u64).max(1)
}

/// A Rice code with an Elias-gamma escape: `q = z >> k` below `q_max` is
/// written in unary (`q` ones, a zero), then the `k` low bits; a larger
/// `q` is `q_max` ones, then gamma(`q - q_max + 2`), then the `k` low
/// bits, so an outlier costs a few bits more than its logarithm instead of
/// its magnitude. gamma(1) after the ones is a raw float (64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Code {
    k: u32,
    q_max: u64,
}

/// The unary limits a stream header can select (2 bits).
const Q_MAXES: [u64; 4] = [2, 4, 8, 16];

fn gamma_len(n: u64) -> u64 {
    2 * bitlen(n) - 1
}

fn write_gamma(w: &mut BitWriter, n: u64) {
    let l = bitlen(n) as u32;
    w.write_bits(0, l - 1);
    w.write_bits(n, l);
}

fn read_gamma(r: &mut BitReader<'_>) -> Option<u64> {
    let mut zeros = 0;
    while !r.read_bit()? {
        zeros += 1;
        if zeros > 63 {
            return None;
        }
    }
    Some((1u64 << zeros) | r.read_bits(zeros)?)
}

fn sym_cost(s: Sym, c: Code) -> u64 {
    match s {
        Sym::Int(z) => {
            let q = z >> c.k;
            if q < c.q_max {
                q + 1 + c.k as u64
            } else {
                c.q_max + gamma_len(q - c.q_max + 2) + c.k as u64
            }
        }
        Sym::Raw(_) => c.q_max + 1 + 64,
    }
}

fn put(w: &mut BitWriter, s: Sym, c: Code) {
    let ones = |w: &mut BitWriter, n: u64| w.write_bits((1u64 << n) - 1, n as u32);
    match s {
        Sym::Int(z) => {
            let q = z >> c.k;
            if q < c.q_max {
                ones(w, q);
                w.write_bit(false);
            } else {
                ones(w, c.q_max);
                write_gamma(w, q - c.q_max + 2);
            }
            w.write_bits(z, c.k);
        }
        Sym::Raw(b) => {
            ones(w, c.q_max);
            write_gamma(w, 1);
            w.write_bits(b, 64);
        }
    }
}

fn get(r: &mut BitReader<'_>, c: Code) -> Option<Sym> {
    let mut q = 0u64;
    while q < c.q_max && r.read_bit()? {
        q += 1;
    }
    if q == c.q_max {
        let n = read_gamma(r)?;
        if n == 1 {
            return Some(Sym::Raw(r.read_bits(64)?));
        }
        q = (n - 2).checked_add(c.q_max)?;
    }
    let high = if c.k == 0 {
        q
    } else {
        q.checked_shl(c.k).filter(|h| h >> c.k == q)?
    };
    Some(Sym::Int(high | r.read_bits(c.k)?))
}

/// The best code for `syms` and its cost in bits. The optimal `k` is near
/// log2 of the mean, so only a few candidates are priced.
fn best_code(syms: &[Sym]) -> (Code, u64) {
    let (mut sum, mut n) = (0u128, 0u128);
    for s in syms {
        if let Sym::Int(z) = s {
            sum += *z as u128;
            n += 1;
        }
    }
    let mean = sum.checked_div(n).unwrap_or(0) as u64;
    let k0 = 63 - (mean | 1).leading_zeros() as i32;
    let mut best = (Code { k: 0, q_max: 2 }, u64::MAX);
    // One pass per k prices every unary limit (compaction runs this a few
    // times per series and block).
    for k in (k0 - 3).max(0)..=(k0 + 1).min(63) {
        let mut costs = [0u64; Q_MAXES.len()];
        for &s in syms {
            for (c, &q_max) in costs.iter_mut().zip(&Q_MAXES) {
                *c += sym_cost(s, Code { k: k as u32, q_max });
            }
        }
        for (&cost, &q_max) in costs.iter().zip(&Q_MAXES) {
            if cost < best.1 {
                best = (Code { k: k as u32, q_max }, cost);
            }
        }
    }
    best
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Zero,
    Dense(Code),
    Sparse(Code, Code),
}

/// Runs of zeros before each non-zero symbol (and a trailing run), and the
/// non-zero symbols (integers minus one), as the sparse mode stores them.
fn sparse_parts(syms: &[Sym]) -> (Vec<Sym>, Vec<Sym>) {
    let (mut runs, mut vals) = (Vec::new(), Vec::new());
    let mut run = 0u64;
    for &s in syms {
        match s {
            Sym::Int(0) => run += 1,
            Sym::Int(z) => {
                runs.push(Sym::Int(run));
                vals.push(Sym::Int(z - 1));
                run = 0;
            }
            Sym::Raw(b) => {
                runs.push(Sym::Int(run));
                vals.push(Sym::Raw(b));
                run = 0;
            }
        }
    }
    if run > 0 {
        runs.push(Sym::Int(run));
    }
    (runs, vals)
}

/// The cheapest mode for a stream and its cost in bits (header included).
fn choose(syms: &[Sym]) -> (Mode, u64) {
    if syms.iter().all(|&s| s == Sym::Int(0)) {
        return (Mode::Zero, 2);
    }
    let (k, dense) = best_code(syms);
    let (runs, vals) = sparse_parts(syms);
    let (kr, cr) = best_code(&runs);
    let (kv, cv) = best_code(&vals);
    let sparse = cr.saturating_add(cv).saturating_add(18);
    if sparse < dense.saturating_add(10) {
        (Mode::Sparse(kr, kv), sparse)
    } else {
        (Mode::Dense(k), dense + 10)
    }
}

fn write_code(w: &mut BitWriter, c: Code) {
    w.write_bits(c.k as u64, 6);
    let qi = Q_MAXES.iter().position(|&q| q == c.q_max).unwrap_or(0);
    w.write_bits(qi as u64, 2);
}

fn read_code(r: &mut BitReader<'_>) -> Option<Code> {
    let k = r.read_bits(6)? as u32;
    let q_max = Q_MAXES[r.read_bits(2)? as usize];
    Some(Code { k, q_max })
}

/// Mode header: 2 bits, then one code (dense) or two (sparse: runs, values).
fn write_mode(w: &mut BitWriter, m: Mode) {
    match m {
        Mode::Zero => w.write_bits(0, 2),
        Mode::Dense(c) => {
            w.write_bits(1, 2);
            write_code(w, c);
        }
        Mode::Sparse(cr, cv) => {
            w.write_bits(2, 2);
            write_code(w, cr);
            write_code(w, cv);
        }
    }
}

fn read_mode(r: &mut BitReader<'_>) -> Option<Mode> {
    let tag = r.read_bits(2)?;
    read_mode_rest(r, tag)
}

/// The mode whose 2-bit tag was already read.
fn read_mode_rest(r: &mut BitReader<'_>, tag: u64) -> Option<Mode> {
    match tag {
        0 => Some(Mode::Zero),
        1 => Some(Mode::Dense(read_code(r)?)),
        2 => Some(Mode::Sparse(read_code(r)?, read_code(r)?)),
        _ => None,
    }
}

/// A mode tag no version 1 chunk has: in the time stream's place, it
/// announces an extended (version 2) header.
const MODE_EXTENDED: u64 = 3;
/// The extension of version 2 (4 bits): decimal values.
const EXT_DECIMAL: u64 = 1;

/// Writes one stream's symbols one at a time, interleaved with others.
struct StreamEnc<'a> {
    mode: Mode,
    syms: &'a [Sym],
    i: usize,
    zeros_left: Option<u64>,
}

impl StreamEnc<'_> {
    fn emit(&mut self, w: &mut BitWriter) {
        let i = self.i;
        self.i += 1;
        match self.mode {
            Mode::Zero => {}
            Mode::Dense(k) => put(w, self.syms[i], k),
            Mode::Sparse(kr, kv) => {
                let left = match self.zeros_left {
                    Some(l) => l,
                    None => {
                        let run = self.syms[i..]
                            .iter()
                            .take_while(|&&s| s == Sym::Int(0))
                            .count() as u64;
                        put(w, Sym::Int(run), kr);
                        run
                    }
                };
                if left > 0 {
                    self.zeros_left = Some(left - 1);
                } else {
                    let s = match self.syms[i] {
                        Sym::Int(z) => Sym::Int(z - 1),
                        raw => raw,
                    };
                    put(w, s, kv);
                    self.zeros_left = None;
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct StreamDec {
    mode: Mode,
    zeros_left: Option<u64>,
}

impl StreamDec {
    fn new(mode: Mode) -> StreamDec {
        StreamDec {
            mode,
            zeros_left: None,
        }
    }

    fn next(&mut self, r: &mut BitReader<'_>) -> Option<Sym> {
        match self.mode {
            Mode::Zero => Some(Sym::Int(0)),
            Mode::Dense(k) => get(r, k),
            Mode::Sparse(kr, kv) => {
                let left = match self.zeros_left {
                    Some(l) => l,
                    None => match get(r, kr)? {
                        Sym::Int(run) => run,
                        Sym::Raw(_) => return None,
                    },
                };
                if left > 0 {
                    self.zeros_left = Some(left - 1);
                    return Some(Sym::Int(0));
                }
                self.zeros_left = None;
                match get(r, kv)? {
                    Sym::Int(z) => Some(Sym::Int(z.checked_add(1)?)),
                    raw => Some(raw),
                }
            }
        }
    }
}

/// Gorilla XOR state (as in chunkenc.rs), shared by encoder and decoder.
#[derive(Debug, Clone)]
struct Xor {
    v: u64,
    leading: u8,
    trailing: u8,
}

impl Xor {
    fn new(first: u64) -> Xor {
        Xor {
            v: first,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    fn write(&mut self, w: &mut BitWriter, vbits: u64) {
        let x = vbits ^ self.v;
        self.v = vbits;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && lead >= self.leading && trail >= self.trailing {
            w.write_bit(false);
            let sig = 64 - self.leading as u32 - self.trailing as u32;
            w.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = lead;
            self.trailing = trail;
            w.write_bit(true);
            w.write_bits(lead as u64, 5);
            let sig = 64 - lead as u32 - trail as u32;
            w.write_bits((sig & 63) as u64, 6);
            w.write_bits(x >> trail, sig);
        }
    }

    fn read(&mut self, r: &mut BitReader<'_>) -> Option<u64> {
        if !r.read_bit()? {
            return Some(self.v);
        }
        if r.read_bit()? {
            let lead = r.read_bits(5)? as u8;
            let mut sig = r.read_bits(6)? as u8;
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
        self.v ^= r.read_bits(sig)? << self.trailing;
        Some(self.v)
    }
}

/// Predicts timestamps; shared by encoder and decoder so they agree.
#[derive(Debug, Clone)]
struct TimePred {
    grid: bool,
    n: i64,
    t: i64,
    g: i64,
}

impl TimePred {
    fn predict(&self) -> i64 {
        if self.grid {
            self.g.wrapping_add(self.n)
        } else {
            self.t.wrapping_add(self.n)
        }
    }

    /// Advances to timestamp `t`, whose residual against the prediction
    /// was `r`.
    fn advance(&mut self, t: i64, r: i64) {
        self.t = t;
        self.g = if r.unsigned_abs() > (self.n / 2).unsigned_abs() {
            t
        } else {
            self.g.wrapping_add(self.n)
        };
    }
}

/// Integer value state; shared by encoder and decoder.
#[derive(Debug, Clone)]
struct IntPred {
    dod: bool,
    shift: u32,
    d: i64,
    iv: i64,
    pd: i64,
}

impl IntPred {
    fn predict(&self) -> i64 {
        if self.dod {
            self.pd
        } else {
            self.d
        }
    }

    /// Applies residual `r`, returning the new value.
    fn apply(&mut self, r: i64) -> i64 {
        let delta = self.predict().wrapping_add(r);
        self.iv = self.iv.wrapping_add(delta.wrapping_shl(self.shift));
        self.pd = delta;
        self.iv
    }
}

fn median(mut v: Vec<i64>) -> i64 {
    if v.is_empty() {
        return 0;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

/// What the integers of the integer code stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntKind {
    /// The values themselves.
    Number,
    /// The floats' IEEE 754 bit patterns.
    Bits,
    /// The values times `10^d` (`1 <= d <= MAX_DECIMALS`): a value is
    /// `i as f64 / 10^d`.
    Decimal(u8),
}

/// Most decimal places of [`IntKind::Decimal`] (4 bits in the header).
const MAX_DECIMALS: u8 = 15;

/// `10^d` for `d <= MAX_DECIMALS`, every one exact in an f64.
const POW10: [f64; MAX_DECIMALS as usize + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The integer `v * 10^d` if the decoder's `i as f64 / 10^d` gives back
/// exactly `v` (bit for bit: `-0.0`, NaNs and infinities never do).
fn decimal(v: f64, d: u8) -> Option<i64> {
    let p = POW10[d as usize];
    let x = (v * p).round();
    if x.abs() > (1u64 << 53) as f64 {
        return None;
    }
    // Checked on the integer, as the decoder computes it: `x` may be -0.0,
    // which the integer 0 does not give back.
    let i = x as i64;
    ((i as f64 / p).to_bits() == v.to_bits()).then_some(i)
}

/// Fewest decimal places (1..=[`MAX_DECIMALS`]) that carry `v` exactly, for
/// a value that is not an integer; `None` for integers and for values no
/// short decimal gives (a computed ratio, a NaN).
fn decimal_places(v: f64) -> Option<u8> {
    if !v.is_finite() || is_integral(v) {
        return None;
    }
    (1..=MAX_DECIMALS).find(|&d| decimal(v, d).is_some())
}

/// The value as an integer of the integer code; `None` is escaped as a raw
/// float.
fn as_int(v: f64, kind: IntKind) -> Option<i64> {
    match kind {
        IntKind::Bits => Some(v.to_bits() as i64),
        IntKind::Number => is_integral(v).then_some(v as i64),
        IntKind::Decimal(d) => decimal(v, d),
    }
}

/// One way to code the values as integers, with its cost in bits.
struct IntCand {
    kind: IntKind,
    dod: bool,
    shift: u32,
    d: i64,
    first: Option<i64>,
    syms: Vec<Sym>,
    mode: Mode,
    cost: u64,
}

impl IntCand {
    /// Header bits this candidate needs beyond the version 1 layout's.
    fn header_extra(&self) -> u64 {
        match self.kind {
            // Extension tag, version and places, less the two value-kind bits.
            IntKind::Decimal(_) => 2 + 4 + 4 - 2,
            _ => 0,
        }
    }
}

/// The cheaper of the two integer predictors for `vs`.
fn int_candidate(vs: &[f64], kind: IntKind) -> IntCand {
    let first = as_int(vs[0], kind);
    // The integer state starts at 0 when the first value is escaped, so
    // that first step must be divisible by the shift too.
    let ints: Vec<i64> = first
        .is_none()
        .then_some(0)
        .into_iter()
        .chain(vs.iter().filter_map(|&v| as_int(v, kind)))
        .collect();
    let deltas: Vec<i64> = ints.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let shift = deltas
        .iter()
        .filter(|&&d| d != 0)
        .map(|d| d.trailing_zeros())
        .min()
        .unwrap_or(0)
        .min(63);
    let d = median(deltas.iter().map(|x| x >> shift).collect());
    let mut best: Option<IntCand> = None;
    for dod in [false, true] {
        let mut p = IntPred {
            dod,
            shift,
            d,
            iv: first.unwrap_or(0),
            pd: d,
        };
        let syms: Vec<Sym> = vs[1..]
            .iter()
            .map(|&v| match as_int(v, kind) {
                None => Sym::Raw(v.to_bits()),
                Some(x) => {
                    let delta = x.wrapping_sub(p.iv) >> shift;
                    let r = delta.wrapping_sub(p.predict());
                    p.apply(r);
                    Sym::Int(zz(r))
                }
            })
            .collect();
        let (mode, cost) = choose(&syms);
        if best.as_ref().is_none_or(|b| cost < b.cost) {
            best = Some(IntCand {
                kind,
                dod,
                shift,
                d,
                first,
                syms,
                mode,
                cost,
            });
        }
    }
    best.expect("two candidates")
}

/// Every choice the encoder makes for one chunk, with the cost of each
/// stream: [`encode`] writes it, [`explain`] reports it.
struct Plan {
    ts0: i64,
    n: i64,
    grid: bool,
    tsyms: Vec<Sym>,
    tmode: Mode,
    /// Bits of the time stream (its mode header included).
    tcost: u64,
    vs: Vec<f64>,
    /// None: Gorilla XOR.
    int: Option<IntCand>,
    /// Bits of the XOR value stream (whole bytes: measured by writing it).
    xor_bits: u64,
}

fn plan(samples: &[(i64, f64)]) -> Plan {
    assert!(
        !samples.is_empty() && samples.len() <= MAX_PACKED_SAMPLES,
        "packed chunk of {} samples",
        samples.len()
    );
    let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let vs: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let n = median(ts.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect());

    // Timestamps: the cheaper predictor.
    let tsyms = |grid: bool| {
        let mut p = TimePred {
            grid,
            n,
            t: ts[0],
            g: ts[0],
        };
        let syms: Vec<Sym> = ts[1..]
            .iter()
            .map(|&t| {
                let r = t.wrapping_sub(p.predict());
                p.advance(t, r);
                Sym::Int(zz(r))
            })
            .collect();
        let (mode, cost) = choose(&syms);
        (grid, syms, mode, cost)
    };
    let (a, b) = (tsyms(false), tsyms(true));
    let (grid, tsyms, tmode, tcost) = if b.3 < a.3 { b } else { a };

    // Values: XOR, or integers (the numbers, or the bit patterns of the
    // floats) with a median-change or previous-change predictor,
    // whichever costs least.
    let mut xor_w = BitWriter::with_capacity(vs.len() * 2);
    let mut x = Xor::new(vs[0].to_bits());
    for v in &vs[1..] {
        x.write(&mut xor_w, v.to_bits());
    }
    let xor_bits = xor_w.bytes().len() as u64 * 8;
    let mut cands = vec![
        int_candidate(&vs, IntKind::Number),
        int_candidate(&vs, IntKind::Bits),
    ];
    // Decimals: with as many places as the longest value needs (values
    // that no short decimal carries are escaped, and priced as such).
    if let Some(d) = vs.iter().filter_map(|&v| decimal_places(v)).max() {
        cands.push(int_candidate(&vs, IntKind::Decimal(d)));
    }
    let int = cands
        .into_iter()
        .min_by_key(|c| c.cost.saturating_add(c.header_extra()))
        .filter(|c| {
            c.cost.saturating_add(c.header_extra()).saturating_add(80) < xor_bits.saturating_add(64)
        });
    Plan {
        ts0: ts[0],
        n,
        grid,
        tsyms,
        tmode,
        tcost,
        vs,
        int,
        xor_bits,
    }
}

/// Encodes samples (at most [`MAX_PACKED_SAMPLES`], at least one) into a
/// packed chunk.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let p = plan(samples);
    let vs = &p.vs;
    let mut w = BitWriter::with_capacity(64 + vs.len());
    let count = samples.len() as u16;
    w.write_byte((count >> 8) as u8);
    w.write_byte(count as u8);
    w.write_varint(p.ts0);
    w.write_varint(p.n);
    w.write_bit(p.grid);
    let decimals = match &p.int {
        Some(IntCand {
            kind: IntKind::Decimal(d),
            ..
        }) => Some(*d),
        _ => None,
    };
    if let Some(d) = decimals {
        // The version 2 header: the extension tag where version 1 has its
        // time mode, then the version and the decimal places.
        w.write_bits(MODE_EXTENDED, 2);
        w.write_bits(EXT_DECIMAL, 4);
        w.write_bits(d as u64, 4);
    }
    write_mode(&mut w, p.tmode);
    let mut tenc = StreamEnc {
        mode: p.tmode,
        syms: &p.tsyms,
        i: 0,
        zeros_left: None,
    };
    match &p.int {
        None => {
            w.write_bit(false);
            w.write_bits(vs[0].to_bits(), 64);
            let mut x = Xor::new(vs[0].to_bits());
            for &v in &vs[1..] {
                tenc.emit(&mut w);
                x.write(&mut w, v.to_bits());
            }
        }
        Some(c) => {
            if decimals.is_none() {
                w.write_bit(true);
                w.write_bit(c.kind == IntKind::Bits);
            }
            w.write_bit(c.dod);
            w.write_bits(c.shift as u64, 6);
            w.write_varint(c.d);
            w.write_bit(c.first.is_none());
            match c.first {
                Some(iv) => w.write_varint(iv),
                None => w.write_bits(vs[0].to_bits(), 64),
            }
            write_mode(&mut w, c.mode);
            let mut venc = StreamEnc {
                mode: c.mode,
                syms: &c.syms,
                i: 0,
                zeros_left: None,
            };
            for _ in 1..vs.len() {
                tenc.emit(&mut w);
                venc.emit(&mut w);
            }
        }
    }
    w.into_bytes()
}

/// Where a packed chunk's bits go, as the encoder would write `samples`
/// now (for analysis: `wasmon tsdb analyze`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explain {
    /// Bytes of the chunk `encode` writes.
    pub bytes: usize,
    /// Bits of the timestamp stream after the first sample (mode header included).
    pub time_bits: u64,
    /// Bits of the value stream after the first value (its mode header
    /// included; XOR rounded up to whole bytes). The rest of `bytes` is the
    /// chunk header: count, first timestamp, interval, value code
    /// parameters, first value.
    pub value_bits: u64,
    /// The value code chosen: `xor`, or `int`/`bits` (numbers or float bit
    /// patterns) with `-median`/`-prev` (the change predictor) and
    /// `-zero`/`-dense`/`-sparse` (the stream mode).
    pub value_code: String,
    /// Timestamp prediction and stream mode: `grid`/`delta` and `-zero`/`-dense`/`-sparse`.
    pub time_code: String,
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Zero => "zero",
        Mode::Dense(_) => "dense",
        Mode::Sparse(..) => "sparse",
    }
}

/// The encoder's choices and their costs for `samples` (at most
/// [`MAX_PACKED_SAMPLES`], at least one).
pub fn explain(samples: &[(i64, f64)]) -> Explain {
    let bytes = encode(samples).len();
    let p = plan(samples);
    let time_code = format!(
        "{}-{}",
        if p.grid { "grid" } else { "delta" },
        mode_name(p.tmode)
    );
    let (value_bits, value_code) = match &p.int {
        None => (p.xor_bits, "xor".to_string()),
        Some(c) => (
            c.cost,
            format!(
                "{}-{}-{}",
                match c.kind {
                    IntKind::Number => "int".to_string(),
                    IntKind::Bits => "bits".to_string(),
                    IntKind::Decimal(d) => format!("dec{d}"),
                },
                if c.dod { "prev" } else { "median" },
                mode_name(c.mode)
            ),
        ),
    };
    Explain {
        bytes,
        time_bits: p.tcost,
        value_bits,
        value_code,
        time_code,
    }
}

fn int_value(iv: i64, kind: IntKind) -> f64 {
    match kind {
        IntKind::Number => iv as f64,
        IntKind::Bits => f64::from_bits(iv as u64),
        IntKind::Decimal(d) => iv as f64 / POW10[d as usize],
    }
}

#[derive(Debug, Clone)]
enum ValDec {
    Xor(Xor),
    /// The integer code.
    Int {
        pred: IntPred,
        stream: StreamDec,
        kind: IntKind,
    },
}

/// Decoder state of a packed chunk (the bit reader lives in `ChunkIter`).
#[derive(Debug, Clone)]
pub(crate) struct PackedDec {
    first: (i64, f64),
    time: TimePred,
    tdec: StreamDec,
    val: ValDec,
}

impl PackedDec {
    /// Reads the header (after the sample count).
    pub(crate) fn new(r: &mut BitReader<'_>) -> Option<PackedDec> {
        let t0 = r.read_varint()?;
        let n = r.read_varint()?;
        let grid = r.read_bit()?;
        let tag = r.read_bits(2)?;
        let decimals = match tag {
            MODE_EXTENDED => {
                if r.read_bits(4)? != EXT_DECIMAL {
                    return None;
                }
                let d = r.read_bits(4)? as u8;
                if d == 0 || d > MAX_DECIMALS {
                    return None;
                }
                Some(d)
            }
            _ => None,
        };
        let tdec = StreamDec::new(match decimals {
            Some(_) => read_mode(r)?,
            // Version 1: those two bits were the time mode.
            None => read_mode_rest(r, tag)?,
        });
        let time = TimePred {
            grid,
            n,
            t: t0,
            g: t0,
        };
        // Version 2 (decimal) values are always integers; version 1 says
        // XOR or integers, and which integers.
        let kind = match decimals {
            Some(d) => Some(IntKind::Decimal(d)),
            None if r.read_bit()? => Some(if r.read_bit()? {
                IntKind::Bits
            } else {
                IntKind::Number
            }),
            None => None,
        };
        let (v0, val) = if let Some(kind) = kind {
            let dod = r.read_bit()?;
            let shift = r.read_bits(6)? as u32;
            let d = r.read_varint()?;
            let (v0, iv) = if r.read_bit()? {
                (f64::from_bits(r.read_bits(64)?), 0)
            } else {
                let iv = r.read_varint()?;
                (int_value(iv, kind), iv)
            };
            let pred = IntPred {
                dod,
                shift,
                d,
                iv,
                pd: d,
            };
            let stream = StreamDec::new(read_mode(r)?);
            (v0, ValDec::Int { pred, stream, kind })
        } else {
            let b = r.read_bits(64)?;
            (f64::from_bits(b), ValDec::Xor(Xor::new(b)))
        };
        Some(PackedDec {
            first: (t0, v0),
            time,
            tdec,
            val,
        })
    }

    /// Sample `i` of the chunk (called in order from 0).
    pub(crate) fn next(&mut self, r: &mut BitReader<'_>, i: u16) -> Option<(i64, f64)> {
        if i == 0 {
            return Some(self.first);
        }
        let rz = match self.tdec.next(r)? {
            Sym::Int(z) => unzz(z),
            Sym::Raw(_) => return None,
        };
        let t = self.time.predict().wrapping_add(rz);
        self.time.advance(t, rz);
        let v = match &mut self.val {
            ValDec::Xor(x) => f64::from_bits(x.read(r)?),
            ValDec::Int { pred, stream, kind } => match stream.next(r)? {
                Sym::Int(z) => int_value(pred.apply(unzz(z)), *kind),
                Sym::Raw(b) => f64::from_bits(b),
            },
        };
        Some((t, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;
    use crate::tsdb::chunkenc::ChunkIter;

    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Encodes, decodes through `ChunkIter` and compares bit for bit;
    /// returns the chunk size.
    fn round_trip(samples: &[(i64, f64)]) -> usize {
        let data = encode(samples);
        let mut it = ChunkIter::new(ENCODING_PACKED, &data);
        assert_eq!(it.num_samples() as usize, samples.len());
        let got: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        assert!(!it.error());
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        data.len()
    }

    const SPECIALS: [f64; 9] = [
        f64::NAN,
        f64::from_bits(STALE_NAN_BITS),
        f64::from_bits(0x7ff8_0000_0000_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        f64::MIN_POSITIVE,
        f64::MAX,
        9_007_199_254_740_992.0,
    ];

    #[test]
    fn random_round_trips() {
        let mut seed = 11;
        for case in 0..400 {
            let n = (rng(&mut seed) % MAX_PACKED_SAMPLES as u64) as usize / (1 + case % 8) + 1;
            let mut t = (rng(&mut seed) as i64) >> (rng(&mut seed) % 64);
            let mut v = (rng(&mut seed) % 1000) as f64;
            let style = rng(&mut seed) % 4;
            let samples: Vec<(i64, f64)> = (0..n)
                .map(|_| {
                    let r = rng(&mut seed);
                    t = t.wrapping_add(match r % 6 {
                        0 | 1 => 15_000,
                        2 => 15_000 + (r >> 8) as i64 % 5 - 2,
                        3 => 30_000 + (r >> 8) as i64 % 500,
                        4 => (r >> 8) as i64 % 20_000_000,
                        _ => (r >> 3) as i64 & 0x7fff_ffff_ffff,
                    });
                    v = match (style, (r >> 16) % 16) {
                        (_, 0) => SPECIALS[(r >> 24) as usize % SPECIALS.len()],
                        (_, 1) => 0.0, // a counter reset
                        (0, _) => v + ((r >> 20) % 100) as f64,
                        (1, _) => f64::from_bits(rng(&mut seed)),
                        (2, 2..=8) => v,
                        (2, _) => ((r >> 20) % 64) as f64 * 4096.0,
                        _ => (r >> 30) as f64 / 7.0,
                    };
                    if v.is_nan() || v.is_infinite() {
                        // Leave the special value in this sample only.
                        let s = v;
                        v = 1.0;
                        return (t, s);
                    }
                    (t, v)
                })
                .collect();
            round_trip(&samples);
        }
        // Extremes of time and single samples.
        round_trip(&[(i64::MIN, 0.0), (i64::MAX, 1.0), (0, 2.0)]);
        round_trip(&[(5, f64::from_bits(STALE_NAN_BITS))]);
        round_trip(&[(5, 3.0)]);
        round_trip(&[(5, f64::NAN), (10, 4.0), (15, 8.0), (20, 12.0)]);
        round_trip(&[(5, 1.5), (10, -0.0), (15, f64::NEG_INFINITY)]);
    }

    /// A scrape-like series: grid timestamps with jitter, integer values.
    fn scrape(n: usize, jitter: bool, value: impl Fn(usize) -> f64) -> Vec<(i64, f64)> {
        let mut seed = 3;
        (0..n)
            .map(|i| {
                let j = if jitter {
                    (rng(&mut seed) % 5) as i64 - 2
                } else {
                    0
                };
                (1_700_000_000_000 + i as i64 * 15_000 + j, value(i))
            })
            .collect()
    }

    #[test]
    fn regular_data_costs_next_to_nothing() {
        // Aligned timestamps and a constant value: all-zero streams.
        let b = round_trip(&scrape(480, false, |_| 7.0));
        assert!(b < 24, "{b} bytes");
        // An idle counter that moves twice and is stale once.
        let b = round_trip(&scrape(480, false, |i| match i {
            0..=99 => 40.0,
            100..=299 => 41.0,
            300 => f64::from_bits(STALE_NAN_BITS),
            _ => 43.0,
        }));
        assert!(b < 50, "{b} bytes");
        // A counter with a constant rate and ±2 ms jitter: values cost
        // nothing, timestamps a few bits each.
        let b = round_trip(&scrape(480, true, |i| (i * 250) as f64));
        assert!(b < 480 * 4 / 8 + 30, "{b} bytes");
    }

    #[test]
    fn busy_counter_beats_head_encoding() {
        use crate::tsdb::chunkenc::{Chunk, SAMPLES_PER_CHUNK};
        let mut seed = 9;
        let mut v = 1e6;
        let samples = scrape(480, true, |_| 0.0)
            .into_iter()
            .map(|(t, _)| {
                v += 1400.0 + (rng(&mut seed) % 200) as f64;
                (t, v)
            })
            .collect::<Vec<_>>();
        let packed = round_trip(&samples);
        // As the head encodes it: 120-sample chunks, first one XOR.
        let mut head = 0;
        let mut c = Chunk::first(samples[0].1, 64);
        for (i, &(t, v)) in samples.iter().enumerate() {
            if i > 0 && (c.num_samples() >= SAMPLES_PER_CHUNK || !c.can_append(v)) {
                head += c.bytes().len();
                c = c.successor(v, 64);
            }
            c.append(t, v);
        }
        head += c.bytes().len();
        assert!(
            packed * 3 < head * 2,
            "packed {packed} vs head {head} bytes"
        );
    }

    #[test]
    fn float_counter_uses_bit_patterns() {
        let mut seed = 5;
        let mut sum = 1234.5678;
        let samples = scrape(480, false, |_| 0.0)
            .into_iter()
            .map(|(t, _)| {
                sum += 15.0 * (0.9 + (rng(&mut seed) % 1000) as f64 / 5000.0);
                (t, sum)
            })
            .collect::<Vec<_>>();
        let packed = round_trip(&samples);
        // Full-precision floats are no short decimals.
        assert!(explain(&samples).value_code.starts_with("bits"));
        let mut x = Xor::new(samples[0].1.to_bits());
        let mut w = BitWriter::default();
        for s in &samples[1..] {
            x.write(&mut w, s.1.to_bits());
        }
        assert!(
            packed + 480 < w.bytes().len(),
            "packed {packed} vs XOR {} bytes",
            w.bytes().len()
        );
        // Negative and mixed-sign floats round-trip in the same mode.
        let mixed: Vec<(i64, f64)> = samples.iter().map(|&(t, v)| (t, -v)).collect();
        round_trip(&mixed);
    }

    /// A value as an exporter prints it with `places` decimals and a
    /// scraper parses it back.
    fn printed(v: f64, places: usize) -> f64 {
        format!("{v:.places$}").parse().unwrap()
    }

    #[test]
    fn decimal_values_round_trip_exactly() {
        let mut seed = 17;
        for case in 0..300usize {
            let places = 1 + case % MAX_DECIMALS as usize;
            let n = 1 + (rng(&mut seed) % 600) as usize;
            // Magnitudes from tiny to where `v * 10^places` nears 2^53.
            let top = (1u64 << 53) as f64 / POW10[places] / 4.0;
            let scale = top.powf((rng(&mut seed) % 1000) as f64 / 1000.0);
            let mut g = (rng(&mut seed) % 1000) as f64 / 1000.0 * scale;
            let samples: Vec<(i64, f64)> = scrape(n, case % 2 == 0, |_| 0.0)
                .into_iter()
                .map(|(t, _)| {
                    let r = rng(&mut seed);
                    let step = ((r % 4001) as f64 - 2000.0) / 1000.0 * scale / 50.0;
                    g += step;
                    let v = match (r >> 20) % 50 {
                        0 => SPECIALS[(r >> 30) as usize % SPECIALS.len()],
                        1 => 0.1 + 0.2, // not a short decimal: escaped
                        2 => -printed(g, places),
                        _ => printed(g, places),
                    };
                    (t, v)
                })
                .collect();
            round_trip(&samples);
            if n > 100 && places <= 6 {
                let e = explain(&samples);
                assert!(
                    e.value_code.starts_with("dec"),
                    "{places} places, scale {scale}: {e:?}"
                );
            }
        }
        // The extremes of the range and of the places.
        let big = (1u64 << 53) as f64;
        round_trip(&[(0, big / 1e3), (1, -big / 1e3), (2, 0.001), (3, -0.0)]);
        round_trip(&[(0, 1e-15), (1, 2e-15), (2, 123.456_789_012_345)]);
        round_trip(&[(0, 0.5), (1, 1e300), (2, f64::MIN_POSITIVE), (3, 0.25)]);
    }

    #[test]
    fn decimal_gauge_costs_its_steps_not_its_bits() {
        // queue_depth of bench/synth_target.py: a random walk with steps
        // uniform in ±2, printed with 3 decimals. Each step is one of 4001
        // values (12 bits of entropy); XOR of the doubles needs ~50 bits.
        let mut seed = 23;
        let mut g = 50.0f64;
        let samples: Vec<(i64, f64)> = scrape(480, false, |_| 0.0)
            .into_iter()
            .map(|(t, _)| {
                g = (g + ((rng(&mut seed) % 4001) as f64 - 2000.0) / 1000.0).max(0.0);
                (t, printed(g, 3))
            })
            .collect();
        round_trip(&samples);
        let e = explain(&samples);
        assert_eq!(e.value_code, "dec3-median-dense");
        assert!(e.value_bits < 480 * 27 / 2, "{e:?}");
        // A histogram's _sum printed with 3 decimals: a decimal counter.
        let mut sum = 1234.5;
        let samples: Vec<(i64, f64)> = scrape(480, true, |_| 0.0)
            .into_iter()
            .map(|(t, _)| {
                sum += (rng(&mut seed) % 20) as f64 * 0.025;
                (t, printed(sum, 3))
            })
            .collect();
        round_trip(&samples);
        // Steps of 0 to 19 times 25 thousandths: ~9.5 bits (XOR: ~45).
        let e = explain(&samples);
        assert!(e.value_code.starts_with("dec3"), "{e:?}");
        assert!(e.value_bits < 480 * 21 / 2, "{e:?}");
    }

    /// Chunks as the version 1 encoder (before decimal values) wrote them,
    /// for the samples of [`v1_sets`]: blocks already on disk hold such
    /// chunks, and must read the same forever.
    const V1_CHUNKS: [&str; 5] = [
        "0028fc9fabfef962b4ea0140213000c6807a13ade0518c6e33898e16ad6375e1e118c5c633a4e1558d6dde1c311b1c6334e0e558d5b0",
        "001efc9fabfef962b4ea0140213808ce5a2c0b3d6f60200401d1987ffc290fc277c4af00c29aa4aa87cadc006277fd2ae20d640601d2f817e1d75860fffbd04c384fe767c0463e90504fc873600c32ce2a049dc04c1fea343c447b9d93b80a4045e39261c95c01743a1b766101e019d042870c309d803147c3ddfffe8a983fffc98b0c4f80bef0043c9715984273780026816b9b273b8063ab416aee0bc30c1fee4a297bc23e5a704258411139bbf6e002c62cdb0dffb67006c0601a9bc0b3019400e22a308896183fff611422b821b3a020a999a2eac9e5c0009a365810e9b960197f3baae9a36460ff84df5874353389c039c734af594f21c0151cb7d1968d3e",
        "001efc9fabfef962b4ea014021380b0ba93b190b0756b4e5a48edf9ddd5c000c017d9fc020c49ba5e2df65e353f7ced7c33be76c8b43939b78d4fdf3b63e1c89374bc6a7e73aac083126e96a449ba5e353f3855604189374b66116872b020c38677ced91687279b78d4fdf3b63b7df3b645a1cbc5466666666666307ffffffffffec666666666666266666666666606666666666650666666666663168ccccccccccc1fffffffffffb06666666666668999999999999819999999999960ccccccccccc588ccccccccccc47ffffffffffe0",
        "000afc9fabfef962b4ea0120c4014000000000000360598bdffa000000000000fb7fd8000000000004bfe4000000000001ec0040000000000003019ffe5001ee132004c06dffc0",
        "006480a0abfef962b0ea011000003428016e8e",
    ];

    /// The samples of the [`V1_CHUNKS`] test vectors.
    fn v1_sets() -> Vec<Vec<(i64, f64)>> {
        let t = |i: i64| 1_700_000_000_000 + i * 15_000 + (i * 7) % 5 - 2;
        let mut v = 1000.0;
        let counter: Vec<(i64, f64)> = (0..40)
            .map(|i| {
                v += ((i * 7919) % 13) as f64;
                (t(i), v)
            })
            .collect();
        let gauge: Vec<(i64, f64)> = (0..30)
            .map(|i| (t(i), (i as f64 * 0.7).sin() * 3.3))
            .collect();
        let mut s = 12.5;
        let sum: Vec<(i64, f64)> = (0..30)
            .map(|i| {
                s += 0.1 * (i % 7) as f64 + 1.234;
                (t(i), s)
            })
            .collect();
        let specials: Vec<(i64, f64)> = [
            5.0,
            6.0,
            f64::from_bits(STALE_NAN_BITS),
            7.0,
            f64::NAN,
            f64::INFINITY,
            -0.0,
            0.0,
            3.0,
            f64::NEG_INFINITY,
        ]
        .iter()
        .enumerate()
        .map(|(i, &v)| (t(i as i64), v))
        .collect();
        let idle: Vec<(i64, f64)> = (0..100)
            .map(|i| {
                (
                    1_700_000_000_000 + i * 15_000,
                    if i < 60 { 3.0 } else { 4.0 },
                )
            })
            .collect();
        vec![counter, gauge, sum, specials, idle]
    }

    #[test]
    fn version_1_chunks_still_decode() {
        for (hex, want) in V1_CHUNKS.iter().zip(v1_sets()) {
            let data: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let mut it = ChunkIter::new(ENCODING_PACKED, &data);
            let got: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
            assert!(!it.error(), "{hex}");
            let bits: Vec<(i64, u64)> = want.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            assert_eq!(got, bits, "{hex}");
            // Integer data is never decimal, so the encoder still writes
            // it as version 1, byte for byte. (The float series may now be
            // written as decimals where that is cheaper.)
            if want
                .iter()
                .all(|&(_, v)| !v.is_finite() || v.fract() == 0.0)
            {
                assert_eq!(encode(&want), data, "{hex}");
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 21;
        for _ in 0..5000 {
            let n = (rng(&mut seed) % 80) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng(&mut seed) as u8).collect();
            let count = ChunkIter::new(ENCODING_PACKED, &bytes).count();
            assert!(count <= u16::MAX as usize);
        }
        // Empty and truncated chunks report an error.
        let mut it = ChunkIter::new(ENCODING_PACKED, &[0, 0]);
        assert_eq!(it.next(), None);
        assert!(it.error());
        let data = encode(&scrape(200, true, |i| (i * i) as f64));
        let mut it = ChunkIter::new(ENCODING_PACKED, &data[..data.len() / 2]);
        assert!(it.by_ref().count() < 200);
        assert!(it.error());
    }
}
