//! Cookie header reading (the transport behind the layer) on arbitrary bytes: one or more
//! `Cookie` headers (split at `\n`), under a few transport settings picked by the first byte.
//! Checked against an independent reading of the session and refresh cookies.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use keycard::{__fuzz::read_credentials, ErrorKind, transport::TransportSettings};
use libfuzzer_sys::fuzz_target;

const REFRESH: &str = "__Secure-keycard-refresh";

fn settings(selector: u8) -> TransportSettings {
    let mut s = TransportSettings::default();
    if selector & 1 != 0 {
        s.refresh_cookie_name = Some(REFRESH.into());
    }
    if selector & 2 != 0 {
        // Small limits, so that the fuzzer reaches them.
        s.max_cookies = 8;
        s.max_cookie_bytes = 48;
    }
    if selector & 4 != 0 {
        s.cookie_name = "sid".into();
    }
    s
}

/// Every `(name, value)` pair of the readable (visible ASCII) headers, in order, and how many
/// `;`-separated pieces were scanned.
fn pairs(values: &[HeaderValue]) -> (Vec<(&str, &str)>, usize) {
    let mut out = Vec::new();
    let mut scanned = 0;
    for v in values {
        let Ok(text) = v.to_str() else { continue };
        for piece in text.split(';') {
            scanned += 1;
            if let Some(pair) = piece.trim_matches([' ', '\t']).split_once('=') {
                out.push(pair);
            }
        }
    }
    (out, scanned)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let settings = settings(selector);
    let values: Vec<HeaderValue> = rest
        .split(|&b| b == b'\n')
        .take(4)
        .filter_map(|chunk| HeaderValue::from_bytes(chunk).ok())
        .collect();
    let mut headers = HeaderMap::new();
    for v in &values {
        headers.append(header::COOKIE, v.clone());
    }

    let (pairs, scanned) = pairs(&values);
    let result = read_credentials(&settings, &headers);
    if scanned > settings.max_cookies {
        assert_eq!(result, Err(ErrorKind::TooLarge));
        return;
    }
    let sessions: Vec<&str> = pairs
        .iter()
        .filter(|(n, _)| *n == settings.cookie_name)
        .map(|(_, v)| *v)
        .collect();
    if sessions.iter().any(|v| v.len() > settings.max_cookie_bytes) {
        // Refused outright, whatever came before it (even a duplicate).
        assert_eq!(result, Err(ErrorKind::TooLarge));
        return;
    }
    let read = result.expect("no limit exceeded");
    let expected = match sessions.as_slice() {
        [] => None,
        [one] => Some(Ok((*one).to_owned())),
        _ => Some(Err(ErrorKind::InvalidCredential)),
    };
    assert_eq!(read.credential, expected);

    let refreshes: Vec<&str> = pairs
        .iter()
        .filter(|(n, _)| settings.refresh_cookie_name.as_deref() == Some(*n))
        .map(|(_, v)| *v)
        .collect();
    let expected_refresh = match refreshes.as_slice() {
        [one] if one.len() <= settings.max_cookie_bytes => Some((*one).to_owned()),
        _ => None,
    };
    assert_eq!(read.refresh, expected_refresh);
});
