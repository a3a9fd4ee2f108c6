//! Length-prefixed frames: a big-endian `i32` size followed by that many bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Kafka's default for `socket.request.max.bytes`.
pub const DEFAULT_MAX_FRAME: usize = 100 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
}

/// Takes one whole frame (without its length prefix) off the front of `buf`.
///
/// Returns `Ok(None)` while the frame is incomplete. A size over `max` is an
/// error as soon as the prefix is readable, so a peer cannot make us buffer
/// it. While waiting for a large frame the buffer is grown to fit it once.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// Prefixes `body` with its length, producing a frame ready for the socket.
pub fn write_frame(out: &mut BytesMut, body: &[u8]) {
    out.reserve(4 + body.len());
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn incomplete_then_complete() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2][..]);
        assert_eq!(split_frame(&mut buf, 10), Ok(None));
        buf.extend_from_slice(&[3, 9]);
        assert_eq!(
            split_frame(&mut buf, 10).unwrap().unwrap().as_ref(),
            &[1, 2, 3]
        );
        assert_eq!(buf.as_ref(), &[9]);
    }

    #[test]
    fn oversized_rejected_before_body_arrives() {
        let mut buf = BytesMut::from(&[0u8, 0, 1, 0][..]);
        assert_eq!(
            split_frame(&mut buf, 255),
            Err(FrameError::TooLarge {
                size: 256,
                max: 255
            })
        );
    }

    #[test]
    fn negative_rejected() {
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(split_frame(&mut buf, 255), Err(FrameError::Negative(-1)));
    }

    proptest! {
        #[test]
        fn frames_round_trip(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut wire = BytesMut::new();
            for b in &bodies {
                write_frame(&mut wire, b);
            }
            let mut got = Vec::new();
            while let Some(f) = split_frame(&mut wire, 64).unwrap() {
                got.push(f.to_vec());
            }
            prop_assert_eq!(got, bodies);
            prop_assert!(wire.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = split_frame(&mut buf, 128) {}
        }
    }
}
