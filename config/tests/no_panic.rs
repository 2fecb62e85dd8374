//! Property tests: arbitrary input to the configuration parser and to the
//! runtime-options decoder must produce a value or an error, never a panic.

use proptest::prelude::*;
use strata_config::{Config, ConfigSource, RuntimeOptions};

/// Fragments that steer generated text towards the schema, so that the
/// deeper validation paths are exercised and not only the TOML parser.
fn toml_like() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("default_class".to_owned()),
        Just("classes".to_owned()),
        Just("backend".to_owned()),
        Just("native".to_owned()),
        Just("microvm".to_owned()),
        Just("[classes.".to_owned()),
        Just("[[".to_owned()),
        Just("]".to_owned()),
        Just(" = ".to_owned()),
        Just("\"".to_owned()),
        Just(".".to_owned()),
        Just("\n".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(",".to_owned()),
        "[a-zA-Z0-9_ -]{0,6}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
}

/// Bytes that start like an `Any` carrying runtime options, so the inner
/// decoder sees arbitrary data too.
fn any_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(|tail| {
        let url = b"runtimeoptions.v1.Options";
        let mut out = vec![0x0a, url.len() as u8];
        out.extend_from_slice(url);
        out.push(0x12);
        out.push(tail.len() as u8);
        out.extend(tail);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parser_never_panics_on_strings(text in any::<String>()) {
        let _ = Config::from_toml(&text, ConfigSource::RuntimeOptionsBody);
    }

    #[test]
    fn parser_never_panics_on_toml_like_text(text in toml_like()) {
        if let Err(err) = Config::from_toml(&text, ConfigSource::RuntimeOptionsBody) {
            let message = err.to_string();
            prop_assert!(message.starts_with("runtime options ConfigBody:"), "{}", message);
            let line = err.location().map_or(0, |at| at.line);
            prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "{}", message);
        }
    }

    #[test]
    fn parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Config::from_toml_bytes(&bytes, ConfigSource::RuntimeOptionsBody);
    }

    #[test]
    fn decoder_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = RuntimeOptions::from_any_bytes(&bytes);
        let _ = RuntimeOptions::decode(&bytes);
        let _ = RuntimeOptions::from_any("runtimeoptions.v1.Options", &bytes);
    }

    #[test]
    fn decoder_never_panics_on_options_like_any(bytes in any_like()) {
        let _ = RuntimeOptions::from_any_bytes(&bytes);
    }
}
