//! `KeycardConfig::from_toml` on arbitrary UTF-8: never panics; a parsed config's validation
//! never panics either, and what it serializes parses again.
#![no_main]

use keycard::KeycardConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = KeycardConfig::from_toml(text) else {
        return;
    };
    let _ = config.session.settings();
    if let Ok(again) = toml::to_string(&config)
        && let Err(e) = KeycardConfig::from_toml(&again)
    {
        panic!("a serialized config does not parse again: {e}\n{again}");
    }
});
