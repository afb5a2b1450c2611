//! WAL record payloads: series definitions and sample batches.
//!
//! A record is one type byte and a body. Series records give each new
//! series' ref and labels once; sample records then carry only refs, so a
//! sample costs about 11 bytes in the WAL (ref and timestamp deltas against
//! the batch's first sample, and the raw 8-byte value, stale NaN included).

use anyhow::{bail, Result};

use super::encoding::{put_str, put_uvarint, put_varint, Decbuf};
use crate::model::{Labels, LabelsBuilder};

pub const TYPE_SERIES: u8 = 1;
pub const TYPE_SAMPLES: u8 = 2;

/// One sample addressed by series ref.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    pub r: u64,
    pub t: i64,
    pub v: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series(Vec<(u64, Labels)>),
    Samples(Vec<RefSample>),
}

/// Encodes one series record entry; call [`begin_series`] first.
pub fn begin_series(b: &mut Vec<u8>) {
    b.push(TYPE_SERIES);
}

pub fn put_series(b: &mut Vec<u8>, r: u64, labels: &[(&str, &str)]) {
    put_uvarint(b, r);
    put_uvarint(b, labels.len() as u64);
    for (n, v) in labels {
        put_str(b, n);
        put_str(b, v);
    }
}

pub fn encode_samples(b: &mut Vec<u8>, samples: &[RefSample]) {
    b.push(TYPE_SAMPLES);
    let Some(first) = samples.first() else { return };
    put_uvarint(b, first.r);
    put_varint(b, first.t);
    for s in samples {
        put_varint(b, s.r.wrapping_sub(first.r) as i64);
        put_varint(b, s.t.wrapping_sub(first.t));
        b.extend_from_slice(&s.v.to_bits().to_le_bytes());
    }
}

pub fn decode(b: &[u8]) -> Result<Record> {
    let mut d = Decbuf::new(b);
    match d.u8()? {
        TYPE_SERIES => {
            let mut out = Vec::new();
            while !d.is_empty() {
                let r = d.uvarint()?;
                let n = d.read_len(d.remaining())?;
                let mut lb = LabelsBuilder::default();
                for _ in 0..n {
                    let name = d.str()?;
                    let value = d.str()?;
                    lb.set(name, value);
                }
                out.push((r, lb.build()));
            }
            Ok(Record::Series(out))
        }
        TYPE_SAMPLES => {
            let mut out = Vec::new();
            if d.is_empty() {
                return Ok(Record::Samples(out));
            }
            let base_r = d.uvarint()?;
            let base_t = d.varint()?;
            while !d.is_empty() {
                let r = base_r.wrapping_add(d.varint()? as u64);
                let t = base_t.wrapping_add(d.varint()?);
                let v = f64::from_bits(d.u64_le()?);
                out.push(RefSample { r, t, v });
            }
            Ok(Record::Samples(out))
        }
        t => bail!("unknown WAL record type {t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let mut b = Vec::new();
        begin_series(&mut b);
        let pairs: Vec<(&str, &str)> = l
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        put_series(&mut b, 7, &pairs);
        assert_eq!(decode(&b).unwrap(), Record::Series(vec![(7, l)]));

        let s = vec![
            RefSample {
                r: 9,
                t: 1000,
                v: 1.5,
            },
            RefSample {
                r: 3,
                t: 999,
                v: f64::INFINITY,
            },
            RefSample {
                r: u64::MAX,
                t: i64::MIN,
                v: -0.0,
            },
        ];
        let mut b = Vec::new();
        encode_samples(&mut b, &s);
        assert_eq!(decode(&b).unwrap(), Record::Samples(s));
        assert!(decode(&b[..b.len() - 1]).is_err());
        assert!(decode(&[9]).is_err());
    }
}
