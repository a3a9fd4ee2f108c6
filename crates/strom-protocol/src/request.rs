//! Request decoding and response encoding.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::registry::{self, ApiSupport};
use crate::ErrorCode;

/// A decoded request: its header and typed body.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub version: i16,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    /// A request in a version we serve.
    Served(Box<RequestKind>),
    /// A version we advertise but refuse per item (Produce v0–v2); the raw
    /// body follows the header.
    Refused(Bytes),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("request of {0} bytes is shorter than a request header")]
    TooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// Kafka answers an ApiVersions request of a version it does not know
    /// with UNSUPPORTED_VERSION and its own ranges, so clients can retry with
    /// a version both sides know.
    #[error("ApiVersions v{version} is not supported")]
    UnsupportedApiVersions { version: i16, correlation_id: i32 },
    #[error("{api_key:?} v{version} is not supported")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Decodes one frame (without its length prefix) into a request.
pub fn decode_request(mut frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let support: &ApiSupport =
        registry::lookup(raw_key).ok_or(DecodeError::UnknownApiKey(raw_key))?;
    let api_key = support.key;
    if version < support.min || version > support.max {
        if api_key == ApiKey::ApiVersions {
            return Err(DecodeError::UnsupportedApiVersions {
                version,
                correlation_id,
            });
        }
        return Err(DecodeError::UnsupportedVersion { api_key, version });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        reason,
    };
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| malformed(e.to_string()))?;
    let body = if version < support.min_served {
        Body::Refused(frame)
    } else {
        Body::Served(Box::new(
            RequestKind::decode(api_key, &mut frame, version)
                .map_err(|e| malformed(e.to_string()))?,
        ))
    };
    Ok(Request {
        header,
        api_key,
        version,
        body,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Encodes a response frame, length prefix included, with the response
/// header version the API and version require.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    // kafka-protocol reports with anyhow; this is the typed boundary.
    let err = |e: anyhow::Error| EncodeError {
        api_key,
        version,
        reason: e.to_string(),
    };
    let mut out = BytesMut::with_capacity(64);
    out.extend_from_slice(&[0, 0, 0, 0]);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, api_key.response_header_version(version))
        .map_err(err)?;
    body.encode(&mut out, version).map_err(err)?;
    Ok(finish_frame(out))
}

/// Encodes a response whose body the caller already serialised (used for
/// hand-written formats such as Produce v0–v2).
pub fn encode_raw_response(correlation_id: i32, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + body.len());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(body);
    finish_frame(out)
}

fn finish_frame(mut out: BytesMut) -> Bytes {
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

/// Our ApiVersions answer: the supported table, with `error`.
pub fn api_versions_response(error: Option<ErrorCode>) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_api_keys(registry::advertised())
}

/// The answer to an ApiVersions request of a version we do not know: v0
/// format (which every client can read) with UNSUPPORTED_VERSION and only
/// ApiVersions' own range, as Kafka sends (the client retries with a
/// version from it and learns the rest then).
pub fn unsupported_api_versions_frame(correlation_id: i32) -> Bytes {
    let own: Vec<_> = registry::advertised()
        .into_iter()
        .filter(|k| k.api_key == ApiKey::ApiVersions as i16)
        .collect();
    let body = ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ErrorCode::UnsupportedVersion.code())
            .with_api_keys(own),
    );
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
        .expect("ApiVersions v0 always encodes")
}

/// A request this broker sends to another (a follower's Fetch), framed with
/// its length prefix and the request header its version requires.
pub fn encode_client_request<R: kafka_protocol::protocol::Request>(
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &R,
) -> Result<Bytes, EncodeError> {
    let api_key = ApiKey::try_from(R::KEY).expect("a request type has a known key");
    let err = |e: anyhow::Error| EncodeError {
        api_key,
        version,
        reason: e.to_string(),
    };
    let mut out = BytesMut::with_capacity(128);
    out.extend_from_slice(&[0, 0, 0, 0]);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(crate::StrBytes::from_string(client_id.to_owned())))
        .encode(&mut out, api_key.request_header_version(version))
        .map_err(err)?;
    body.encode(&mut out, version).map_err(err)?;
    Ok(finish_frame(out))
}

/// Decodes the answer (one frame, without its length prefix) to a request
/// sent with [`encode_client_request`]: refused when its correlation id is
/// not `correlation_id` or it does not decode whole.
pub fn decode_client_response<R: kafka_protocol::protocol::Request>(
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> Result<R::Response, String> {
    use kafka_protocol::protocol::HeaderVersion;
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    if header.correlation_id != correlation_id {
        return Err(format!(
            "answer to request {} where {correlation_id} was expected",
            header.correlation_id
        ));
    }
    let response =
        R::Response::decode(&mut frame, version).map_err(|e| format!("response body: {e}"))?;
    if frame.has_remaining() {
        return Err(format!("{} bytes after the response", frame.remaining()));
    }
    Ok(response)
}

/// Reads a big-endian `i16` error code from the front of a response body, for tests.
pub fn peek_i16(mut b: &[u8]) -> Option<i16> {
    (b.remaining() >= 2).then(|| b.get_i16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_request_decodes_as_a_request_and_its_answer_back() {
        use kafka_protocol::messages::{FetchRequest, FetchResponse};
        let request = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1);
        let framed = encode_client_request(12, 7, "strom-replica-fetcher-2", &request).unwrap();
        let decoded = decode_request(framed.slice(4..)).unwrap();
        assert_eq!(
            (
                decoded.api_key,
                decoded.version,
                decoded.header.correlation_id
            ),
            (ApiKey::Fetch, 12, 7)
        );
        let Body::Served(body) = decoded.body else {
            panic!("served")
        };
        assert!(matches!(*body, RequestKind::Fetch(ref f) if f.max_wait_ms == 500));
        let answer = ResponseKind::Fetch(FetchResponse::default().with_session_id(3));
        let frame = encode_response(ApiKey::Fetch, 12, 7, &answer).unwrap();
        let back = decode_client_response::<FetchRequest>(12, 7, frame.slice(4..)).unwrap();
        assert_eq!(back.session_id, 3);
        assert!(decode_client_response::<FetchRequest>(12, 8, frame.slice(4..)).is_err());
        assert!(
            decode_client_response::<FetchRequest>(12, 7, frame.slice(4..frame.len() - 1)).is_err()
        );
    }
    use kafka_protocol::messages::ApiVersionsRequest;
    use proptest::prelude::*;

    fn request_frame(key: i16, version: i16, corr: i32, body: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.extend_from_slice(&key.to_be_bytes());
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&corr.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
        if version >= 3 && key == ApiKey::ApiVersions as i16 {
            b.extend_from_slice(&[0]); // header tagged fields
        }
        b.extend_from_slice(body);
        b.freeze()
    }

    #[test]
    fn decodes_api_versions_v3() {
        let mut body = BytesMut::new();
        ApiVersionsRequest::default()
            .with_client_software_name("t".into())
            .with_client_software_version("1".into())
            .encode(&mut body, 3)
            .unwrap();
        let req = decode_request(request_frame(18, 3, 7, &body)).unwrap();
        assert_eq!(req.api_key, ApiKey::ApiVersions);
        assert_eq!(req.header.correlation_id, 7);
        assert!(matches!(
            req.body,
            Body::Served(ref k) if matches!(**k, RequestKind::ApiVersions(_))
        ));
    }

    #[test]
    fn unknown_version_of_api_versions_is_answered() {
        match decode_request(request_frame(18, 99, 5, &[])) {
            Err(DecodeError::UnsupportedApiVersions { correlation_id, .. }) => {
                assert_eq!(correlation_id, 5)
            }
            other => panic!("{other:?}"),
        }
        let frame = unsupported_api_versions_frame(5);
        // length, correlation id, then the error code.
        assert_eq!(&frame[4..8], &5i32.to_be_bytes());
        assert_eq!(peek_i16(&frame[8..]), Some(35));
    }

    #[test]
    fn unknown_key_and_old_produce() {
        assert!(matches!(
            decode_request(request_frame(9999, 0, 1, &[])),
            Err(DecodeError::UnknownApiKey(9999))
        ));
        let req = decode_request(request_frame(0, 2, 1, &[1, 2, 3])).unwrap();
        assert!(matches!(req.body, Body::Refused(ref b) if b.as_ref() == [1, 2, 3]));
        assert!(matches!(
            decode_request(request_frame(1, 3, 1, &[])),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Any bytes after a valid key and version decode or fail cleanly.
        #[test]
        fn arbitrary_bodies_never_panic(
            idx in 0..registry::SUPPORTED.len(),
            version_off in 0i16..20,
            corr in any::<i32>(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let s = registry::SUPPORTED[idx];
            let version = (s.min + version_off).min(s.max);
            let _ = decode_request(request_frame(s.key as i16, version, corr, &body));
        }

        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(Bytes::from(frame));
        }
    }
}
