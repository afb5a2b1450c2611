//! The remote-write 1.0 wire format: `prometheus.WriteRequest` (protobuf,
//! field numbers from prompb/remote.proto and types.proto), block-snappy
//! compressed. Only the messages and fields a sender needs are defined;
//! prost's derive gives the encoding without protoc.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Sorted by name, as the spec requires.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// In timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Protobuf-encodes and block-snappy-compresses a request (the spec wants
/// the raw block format, not snappy's framed stream format).
pub fn encode(req: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw)
}

/// The inverse of [`encode`] (for tests and receivers).
pub fn decode(body: &[u8]) -> anyhow::Result<WriteRequest> {
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(WriteRequest::decode(raw.as_slice())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_snappy_and_protobuf() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "job".into(),
                        value: "x".into(),
                    },
                ],
                samples: vec![
                    Sample {
                        value: 1.5,
                        timestamp: 1000,
                    },
                    Sample {
                        value: f64::from_bits(crate::model::STALE_NAN_BITS),
                        timestamp: 2000,
                    },
                ],
            }],
        };
        let body = encode(&req).unwrap();
        // Block format: starts with the uncompressed length as a varint, not
        // the framed format's stream identifier chunk.
        assert_ne!(body[0], 0xff);
        let back = decode(&body).unwrap();
        assert_eq!(back.timeseries[0].labels, req.timeseries[0].labels);
        assert_eq!(back.timeseries[0].samples[0], req.timeseries[0].samples[0]);
        assert_eq!(
            back.timeseries[0].samples[1].value.to_bits(),
            crate::model::STALE_NAN_BITS
        );
        // Field numbers are the spec's: timeseries=1, labels=1, samples=2,
        // value=1 (fixed64), timestamp=2 (varint).
        let raw = req.encode_to_vec();
        assert_eq!(raw[0], (1 << 3) | 2);
        assert!(decode(b"not snappy at all").is_err());
    }
}
