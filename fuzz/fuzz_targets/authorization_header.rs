//! `Authorization` header parsing (`keycard::__fuzz::parse_bearer`) on arbitrary bytes, checked
//! against an independent reading of RFC 6750 §2.1, then the same bytes through the transport.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use keycard::{
    __fuzz::{parse_bearer, read_credentials}, ErrorKind, transport::TransportSettings,
};
use libfuzzer_sys::fuzz_target;

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(t: &[u8]) -> bool {
    let body = t
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
        .count();
    body > 0 && t[body..].iter().all(|&b| b == b'=')
}

/// The token of a well-formed `Bearer` credential: `bearer` (any case), 1+ spaces, a b64token.
fn expected_token(v: &[u8]) -> Option<&[u8]> {
    let rest = v
        .get(..6)?
        .eq_ignore_ascii_case(b"bearer")
        .then(|| &v[6..])?;
    let spaces = rest.iter().take_while(|&&b| b == b' ').count();
    let token = &rest[spaces..];
    (spaces > 0 && is_b64token(token)).then_some(token)
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_bearer(data);
    match (&parsed, expected_token(data)) {
        (Some(Ok(range)), Some(token)) => assert_eq!(&data[range.clone()], token),
        (Some(Ok(_)), None) => panic!("accepted a malformed credential: {data:?}"),
        (_, Some(_)) => panic!("refused a well-formed credential: {data:?} -> {parsed:?}"),
        (Some(Err(kind)), None) => assert_eq!(*kind, ErrorKind::MalformedRequest),
        (None, None) => {
            // Another scheme: never one that is `bearer` followed by a space.
            assert!(
                !(data.len() > 6 && data[..6].eq_ignore_ascii_case(b"bearer") && data[6] == b' ')
            );
        }
    }

    // The same value through the transport, as the layer reads it.
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    let settings = TransportSettings {
        read_bearer: true,
        ..TransportSettings::default()
    };
    match read_credentials(&settings, &headers) {
        Err(kind) => {
            assert_eq!(kind, ErrorKind::TooLarge);
            assert!(data.len() > settings.max_authorization_bytes);
        }
        Ok(read) => {
            assert!(data.len() <= settings.max_authorization_bytes);
            match (read.credential, parsed) {
                (None, None) => {}
                (Some(Ok(v)), Some(Ok(range))) => assert_eq!(v.as_bytes(), &data[range]),
                (Some(Err(a)), Some(Err(b))) => assert_eq!(a, b),
                (got, want) => panic!("transport {got:?} but parse_bearer {want:?}"),
            }
        }
    }
});
