//! Produce v0–v2: advertised, refused.
//!
//! Kafka 4 removed these versions (KIP-896) but kept advertising them,
//! because librdkafka before 2.10 only enables compression when the broker
//! lists Produce v0 (KAFKA-18659). A request in one of them is answered with
//! UNSUPPORTED_VERSION for every partition. The `kafka-protocol` crate no
//! longer decodes these versions, so the few fields needed are read here.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ErrorCode;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed Produce v0-v2 body")]
pub struct Malformed;

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), Malformed> {
        if self.0.remaining() < n {
            Err(Malformed)
        } else {
            Ok(())
        }
    }
    fn i16(&mut self) -> Result<i16, Malformed> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> Result<i32, Malformed> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn skip(&mut self, n: usize) -> Result<(), Malformed> {
        self.need(n)?;
        self.0.advance(n);
        Ok(())
    }
    fn string(&mut self) -> Result<Bytes, Malformed> {
        let len = self.i16()?;
        let len = usize::try_from(len).map_err(|_| Malformed)?;
        self.need(len)?;
        Ok(self.0.split_to(len))
    }
    fn count(&mut self) -> Result<usize, Malformed> {
        let n = self.i32()?;
        // Every element takes at least 4 bytes: a bound against huge counts.
        let n = usize::try_from(n).map_err(|_| Malformed)?;
        if n > self.0.remaining() / 4 + 1 {
            return Err(Malformed);
        }
        Ok(n)
    }
}

/// Builds the response body (after the correlation id) refusing every
/// partition of a Produce v0–v2 request, or `None` for acks=0, which gets no
/// response.
pub fn refuse(body: Bytes, version: i16) -> Result<Option<Bytes>, Malformed> {
    let mut r = Reader(body);
    let acks = r.i16()?;
    r.skip(4)?; // timeout
    let mut out = BytesMut::new();
    let topics = r.count()?;
    out.put_i32(topics as i32);
    for _ in 0..topics {
        let name = r.string()?;
        out.put_i16(name.len() as i16);
        out.put_slice(&name);
        let partitions = r.count()?;
        out.put_i32(partitions as i32);
        for _ in 0..partitions {
            let index = r.i32()?;
            let size = r.i32()?;
            if size > 0 {
                r.skip(size as usize)?;
            }
            out.put_i32(index);
            out.put_i16(ErrorCode::UnsupportedVersion.code());
            out.put_i64(-1); // base offset
            if version >= 2 {
                out.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle time
    }
    Ok((acks != 0).then(|| out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_each_partition() {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(1000);
        b.put_i32(1);
        b.put_i16(1);
        b.put_slice(b"t");
        b.put_i32(2);
        for p in 0..2 {
            b.put_i32(p);
            b.put_i32(3);
            b.put_slice(b"xyz");
        }
        let out = refuse(b.freeze(), 2).unwrap().unwrap();
        let mut o = out.clone();
        assert_eq!(o.get_i32(), 1);
        assert_eq!(o.get_i16(), 1);
        o.advance(1);
        assert_eq!(o.get_i32(), 2);
        assert_eq!(o.get_i32(), 0);
        assert_eq!(o.get_i16(), 35);
        assert_eq!(o.get_i64(), -1);
        assert_eq!(o.get_i64(), -1);
        assert_eq!(o.get_i32(), 1);
        assert_eq!(o.get_i16(), 35);
        o.advance(16);
        assert_eq!(o.get_i32(), 0);
        assert!(o.is_empty());
    }

    #[test]
    fn acks_zero_has_no_response() {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(1000);
        b.put_i32(0);
        assert_eq!(refuse(b.freeze(), 0), Ok(None));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256), v in 0i16..3) {
            let _ = refuse(Bytes::from(body), v);
        }
    }
}
