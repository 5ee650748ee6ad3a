//! Request and response envelopes.
//!
//! A request is `header ++ body`, where the header is v1 (api key, version, correlation id,
//! nullable client id) or v2 (v1 plus tagged fields) as the request type declares for the
//! version. A response is `correlation id [++ tagged fields] ++ body`; the tagged section exists
//! exactly when the request used header v2, except for ApiVersions, whose response header is
//! always v0 so that a client can read it before knowing what the broker speaks.

use bytes::{BufMut, Bytes, BytesMut};

use crate::api::{ApiKey, KafkaRequest};
use crate::error::{Error, Result};
use crate::protocol::{ByteSource, Source};

/// Encodes a complete request frame (length prefix, header, body) into `out`.
pub fn encode_request<R: KafkaRequest>(
    out: &mut BytesMut,
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> Result<()> {
    let header_version = R::header_version(version);
    let start = out.len();
    out.put_i32(0); // length, patched below
    out.put_i16(R::API_KEY.key());
    out.put_i16(version);
    out.put_i32(correlation_id);
    crate::frame::put_string(out, client_id, false, "client id")?;
    if header_version >= 2 {
        out.put_u8(0); // no tagged fields
    }
    request.encode(out, version).map_err(|e| Error::Encode {
        what: R::API_KEY.name(),
        detail: format!("version {version}: {e}"),
    })?;
    let len = out.len() - start - 4;
    let len = i32::try_from(len).map_err(|_| Error::Encode {
        what: "request",
        detail: format!("{len} bytes do not fit a frame"),
    })?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Whether the response to `api` at `version` carries a v1 (flexible) response header.
pub fn response_header_is_flexible(api: ApiKey, version: i16) -> bool {
    api != ApiKey::ApiVersions && api.is_flexible(version)
}

/// Reads only the correlation id of a response frame body (to route it before decoding).
pub fn peek_correlation_id(frame: &[u8]) -> Result<i32> {
    if frame.len() < 4 {
        return Err(Error::Truncated {
            what: "response header",
            offset: 0,
            needed: 4,
            remaining: frame.len(),
        });
    }
    Ok(i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]))
}

/// Splits a response frame body into its correlation id and its body, skipping the header's
/// tagged fields when the header is flexible.
pub fn split_response(frame: Bytes, api: ApiKey, version: i16) -> Result<(i32, Bytes)> {
    let flexible = response_header_is_flexible(api, version);
    let mut src = ByteSource::new(frame.clone(), flexible);
    let correlation_id = src.i32()?;
    if flexible {
        src.tagged_fields(&[], |_, _| Ok(()))?;
    }
    let consumed = frame.len() - src.remaining();
    Ok((correlation_id, frame.slice(consumed..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    #[test]
    fn request_header_v1_and_v2_layouts() {
        let mut out = BytesMut::new();
        encode_request(&mut out, &MetadataRequest::default(), 1, 7, Some("krust")).unwrap();
        // len, key 3, version 1, correlation 7, client id "krust", then the body (topics = null
        // is not allowed before v1; default is an empty array: 4 bytes of zero)
        assert_eq!(&out[4..8], &[0, 3, 0, 1]);
        assert_eq!(&out[8..12], &7i32.to_be_bytes());
        assert_eq!(&out[12..19], b"\x00\x05krust");
        assert_eq!(
            i32::from_be_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len() - 4
        );

        let mut out = BytesMut::new();
        encode_request(&mut out, &ApiVersionsRequest::default(), 3, 1, None).unwrap();
        assert_eq!(
            &out[12..15],
            &[0xff, 0xff, 0x00],
            "null client id then empty tags"
        );
    }

    #[test]
    fn response_header_flexibility() {
        assert!(!response_header_is_flexible(ApiKey::ApiVersions, 3));
        assert!(response_header_is_flexible(ApiKey::Metadata, 9));
        assert!(!response_header_is_flexible(ApiKey::Metadata, 8));
        let frame = Bytes::from_static(&[0, 0, 0, 9, 0, 0xaa]);
        let (id, body) = split_response(frame, ApiKey::Metadata, 9).unwrap();
        assert_eq!((id, &body[..]), (9, &[0xaa][..]));
        assert!(split_response(Bytes::from_static(&[0, 0]), ApiKey::Metadata, 1).is_err());
    }
}
