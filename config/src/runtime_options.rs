//! Decodes the runtime options containerd passes to the shim.
//!
//! For runtimes other than runc, containerd wraps the `options` table of a
//! runtime in a `google.protobuf.Any` holding a `runtimeoptions.v1.Options`
//! message:
//!
//! ```text
//! google.protobuf.Any        { string type_url = 1; bytes value = 2; }
//! runtimeoptions.v1.Options  { string type_url = 1; string config_path = 2; bytes config_body = 3; }
//! ```
//!
//! The shim sees it as the raw bytes of the `Any` on the `start`
//! subcommand's standard input, and as an already split `Any` in the Create
//! request; both entry points are here.

use crate::wire::{Field, Reader, WireError, WireType};

/// The fully qualified protobuf name of the options message; an `Any`
/// whose type URL ends in this name (after a `/`, if any) carries options.
pub const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";

const ANY_MESSAGE: &str = "google.protobuf.Any";

/// The settings of `runtimeoptions.v1.Options` that locate the Strata
/// configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// `TypeUrl`: the type of the content of the config file; informational.
    pub type_url: String,
    /// `ConfigPath`: a configuration file to load; empty when not set.
    pub config_path: String,
    /// `ConfigBody`: the whole configuration inline; used only when
    /// `config_path` is empty. Empty when not set.
    pub config_body: Vec<u8>,
}

impl RuntimeOptions {
    /// Decodes the serialized `google.protobuf.Any` that containerd writes to
    /// the shim's standard input on `start`.
    ///
    /// Returns `None` when the input is empty or the `Any` holds some other
    /// message (for example runc's options).
    pub fn from_any_bytes(bytes: &[u8]) -> Result<Option<Self>, DecodeError> {
        let mut type_url = "";
        let mut value: &[u8] = &[];
        let mut reader = Reader::new(bytes);
        while let Some(field) = next(&mut reader, ANY_MESSAGE)? {
            match field.number {
                1 => type_url = string_field(&field, "type_url", ANY_MESSAGE)?,
                2 => value = bytes_field(&field, "value", ANY_MESSAGE)?,
                _ => {}
            }
        }
        Self::from_any(type_url, value)
    }

    /// Decodes an `Any` that has already been split into its type URL and
    /// value, as in the Create request.
    ///
    /// Returns `None` when the type URL names another message, including
    /// when it is empty.
    pub fn from_any(type_url: &str, value: &[u8]) -> Result<Option<Self>, DecodeError> {
        if is_options_type_url(type_url) {
            Self::decode(value).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Decodes a serialized `runtimeoptions.v1.Options` message. Unknown
    /// fields are skipped; for repeated fields the last occurrence wins,
    /// as protobuf specifies.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const MESSAGE: &str = RUNTIME_OPTIONS_TYPE;
        let mut options = RuntimeOptions::default();
        let mut reader = Reader::new(bytes);
        while let Some(field) = next(&mut reader, MESSAGE)? {
            match field.number {
                1 => options.type_url = string_field(&field, "type_url", MESSAGE)?.to_owned(),
                2 => options.config_path = string_field(&field, "config_path", MESSAGE)?.to_owned(),
                3 => options.config_body = bytes_field(&field, "config_body", MESSAGE)?.to_vec(),
                _ => {}
            }
        }
        Ok(options)
    }
}

/// Accepts `runtimeoptions.v1.Options` bare or behind any URL prefix such as
/// `type.googleapis.com/`.
fn is_options_type_url(type_url: &str) -> bool {
    let name = type_url.rsplit_once('/').map_or(type_url, |(_, name)| name);
    name == RUNTIME_OPTIONS_TYPE
}

fn next<'a>(
    reader: &mut Reader<'a>,
    message: &'static str,
) -> Result<Option<Field<'a>>, DecodeError> {
    reader
        .next_field()
        .map_err(|WireError { offset, kind }| DecodeError {
            message,
            offset,
            kind,
        })
}

fn bytes_field<'a>(
    field: &Field<'a>,
    name: &'static str,
    message: &'static str,
) -> Result<&'a [u8], DecodeError> {
    if field.wire_type == WireType::Len {
        Ok(field.bytes)
    } else {
        Err(DecodeError {
            message,
            offset: field.offset,
            kind: DecodeErrorKind::WrongWireType {
                field: name,
                found: field.wire_type.name(),
            },
        })
    }
}

fn string_field<'a>(
    field: &Field<'a>,
    name: &'static str,
    message: &'static str,
) -> Result<&'a str, DecodeError> {
    let bytes = bytes_field(field, name, message)?;
    std::str::from_utf8(bytes).map_err(|_| DecodeError {
        message,
        offset: field.offset,
        kind: DecodeErrorKind::InvalidUtf8 { field: name },
    })
}

/// Why runtime options could not be decoded, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {message} at byte {offset}: {kind}")]
pub struct DecodeError {
    /// The protobuf message being decoded.
    pub message: &'static str,
    /// Byte offset within that message's encoding.
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// The kinds of malformed protobuf input the decoder reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ends in the middle of the named item.
    #[error("input ends inside {0}")]
    Truncated(&'static str),
    /// A varint longer than ten bytes or larger than 64 bits.
    #[error("varint does not fit in 64 bits")]
    VarintOverflow,
    /// Wire types 6 and 7 do not exist.
    #[error("invalid wire type {0}")]
    InvalidWireType(u8),
    /// Field number 0, or above 2^29 - 1.
    #[error("invalid field number {0}")]
    InvalidFieldNumber(u64),
    /// An end-group tag without a matching start-group tag.
    #[error("end-group tag without a matching start")]
    UnexpectedEndGroup,
    /// A known field encoded with an incompatible wire type.
    #[error("field {field} is encoded as {found}, expected length-delimited")]
    WrongWireType {
        /// The field's name.
        field: &'static str,
        /// The wire type found.
        found: &'static str,
    },
    /// A string field that is not UTF-8.
    #[error("field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field's name.
        field: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a length-delimited field; lengths stay below 128 in tests.
    fn len_field(number: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 128);
        let mut out = vec![(number << 3) | 2, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    fn any(type_url: &str, value: &[u8]) -> Vec<u8> {
        let mut out = len_field(1, type_url.as_bytes());
        out.extend(len_field(2, value));
        out
    }

    fn options_bytes() -> Vec<u8> {
        let mut out = len_field(1, b"io.strata.config.v1");
        out.extend(len_field(2, b"/etc/strata/fast.toml"));
        out.extend(len_field(3, b"default_class = \"x\""));
        out
    }

    fn expected() -> RuntimeOptions {
        RuntimeOptions {
            type_url: "io.strata.config.v1".to_owned(),
            config_path: "/etc/strata/fast.toml".to_owned(),
            config_body: b"default_class = \"x\"".to_vec(),
        }
    }

    #[test]
    fn decodes_options_in_any() {
        let bytes = any("runtimeoptions.v1.Options", &options_bytes());
        assert_eq!(RuntimeOptions::from_any_bytes(&bytes), Ok(Some(expected())));
    }

    #[test]
    fn accepts_type_url_prefixes() {
        for url in [
            "runtimeoptions.v1.Options",
            "type.googleapis.com/runtimeoptions.v1.Options",
            "example.com/types/runtimeoptions.v1.Options",
            "/runtimeoptions.v1.Options",
        ] {
            assert_eq!(
                RuntimeOptions::from_any(url, &options_bytes()),
                Ok(Some(expected())),
                "{url}"
            );
        }
    }

    #[test]
    fn foreign_or_empty_type_url_is_none() {
        for url in [
            "containerd.runc.v1.Options",
            "type.googleapis.com/containerd.runc.v1.Options",
            "runtimeoptions.v1.OptionsX",
            "xruntimeoptions.v1.Options",
            "",
        ] {
            assert_eq!(
                RuntimeOptions::from_any(url, &options_bytes()),
                Ok(None),
                "{url}"
            );
        }
        // runc's options carry other fields; they are never decoded.
        let runc = any(
            "containerd.runc.v1.Options",
            &[0x08, 0x01, 0x12, 0x01, b'x'],
        );
        assert_eq!(RuntimeOptions::from_any_bytes(&runc), Ok(None));
    }

    #[test]
    fn empty_input_is_none() {
        assert_eq!(RuntimeOptions::from_any_bytes(&[]), Ok(None));
        assert_eq!(RuntimeOptions::from_any_bytes(&any("", &[])), Ok(None));
    }

    #[test]
    fn empty_options_message_decodes_to_defaults() {
        let bytes = any("runtimeoptions.v1.Options", &[]);
        assert_eq!(
            RuntimeOptions::from_any_bytes(&bytes),
            Ok(Some(RuntimeOptions::default()))
        );
        // The value field may be absent altogether.
        let bytes = len_field(1, b"runtimeoptions.v1.Options");
        assert_eq!(
            RuntimeOptions::from_any_bytes(&bytes),
            Ok(Some(RuntimeOptions::default()))
        );
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut value = vec![
            0x20, 0x96, 0x01, // 4: varint
            0x29, 1, 2, 3, 4, 5, 6, 7, 8, // 5: fixed64
            0x35, 1, 2, 3, 4, // 6: fixed32
            0x3b, 0x08, 0x01, 0x3c, // 7: group
        ];
        value.extend(len_field(9, b"ignored"));
        value.extend(options_bytes());
        value.extend([0xc0, 0x3e, 0x01]); // 1000: varint
        let mut bytes = vec![0x18, 0x07]; // Any field 3: varint
        bytes.extend(any("runtimeoptions.v1.Options", &value));
        bytes.extend(len_field(15, b"trailing"));
        assert_eq!(RuntimeOptions::from_any_bytes(&bytes), Ok(Some(expected())));
    }

    #[test]
    fn field_order_does_not_matter_and_last_wins() {
        let mut value = len_field(3, b"body");
        value.extend(len_field(2, b"/first"));
        value.extend(len_field(2, b"/second"));
        let mut bytes = len_field(2, &value);
        bytes.extend(len_field(1, b"runtimeoptions.v1.Options"));
        let got = RuntimeOptions::from_any_bytes(&bytes)
            .expect("valid")
            .expect("options");
        assert_eq!(got.config_path, "/second");
        assert_eq!(got.config_body, b"body");
    }

    #[test]
    fn truncated_input_is_an_error() {
        let full = any("runtimeoptions.v1.Options", &options_bytes());
        // Cutting right after the complete type_url field leaves a valid Any.
        let boundary = 2 + RUNTIME_OPTIONS_TYPE.len();
        for cut in (1..full.len()).filter(|&cut| cut != boundary) {
            let err = RuntimeOptions::from_any_bytes(&full[..cut]).expect_err("truncated");
            assert!(
                matches!(err.kind, DecodeErrorKind::Truncated(_)),
                "cut at {cut}: {err}"
            );
            assert!(err.to_string().contains("input ends inside"), "{err}");
        }
        // Truncation inside the inner message names that message.
        let err = RuntimeOptions::from_any("runtimeoptions.v1.Options", &options_bytes()[..5])
            .expect_err("truncated");
        assert_eq!(err.message, RUNTIME_OPTIONS_TYPE);
        assert_eq!(
            err.to_string(),
            "cannot decode runtimeoptions.v1.Options at byte 2: input ends inside a length-delimited field"
        );
    }

    #[test]
    fn wrong_wire_type_for_known_field_is_an_error() {
        let err = RuntimeOptions::decode(&[0x10, 0x01]).expect_err("varint config_path");
        assert_eq!(
            err.kind,
            DecodeErrorKind::WrongWireType {
                field: "config_path",
                found: "varint"
            }
        );
        let err = RuntimeOptions::from_any_bytes(&[0x08, 0x01]).expect_err("varint type_url");
        assert_eq!(err.message, "google.protobuf.Any");
    }

    #[test]
    fn non_utf8_strings_are_an_error() {
        let err = RuntimeOptions::decode(&len_field(2, &[0xff, 0xfe])).expect_err("bad utf8");
        assert_eq!(
            err.kind,
            DecodeErrorKind::InvalidUtf8 {
                field: "config_path"
            }
        );
        // config_body is bytes: any content is accepted.
        let got = RuntimeOptions::decode(&len_field(3, &[0xff])).expect("bytes");
        assert_eq!(got.config_body, [0xff]);
    }

    #[test]
    fn errors_convert_into_config_errors() {
        let err = RuntimeOptions::from_any_bytes(&[0x0a]).expect_err("truncated");
        let err = crate::ConfigError::from(err);
        assert!(err
            .to_string()
            .starts_with("invalid containerd runtime options: cannot decode"));
    }

    /// Cross-checks against the reference encoder when it is installed.
    #[test]
    fn matches_protoc_encoding() {
        use std::io::Write;
        use std::process::{Command, Stdio};

        let protoc = std::path::Path::new("/usr/bin/protoc");
        if !protoc.exists() {
            println!("skipping: /usr/bin/protoc is not installed");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let proto = "syntax = \"proto3\";\n\
                     package runtimeoptions.v1;\n\
                     message Options { string type_url = 1; string config_path = 2; bytes config_body = 3; }\n\
                     message Any { string type_url = 1; bytes value = 2; }\n";
        std::fs::write(dir.path().join("opts.proto"), proto).expect("write proto");
        let encode = |message: &str, text: &str| -> Vec<u8> {
            let mut child = Command::new(protoc)
                .arg(format!("--encode=runtimeoptions.v1.{message}"))
                .arg(format!("--proto_path={}", dir.path().display()))
                .arg("opts.proto")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn protoc");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
            let out = child.wait_with_output().expect("protoc output");
            assert!(out.status.success(), "protoc failed");
            out.stdout
        };

        let value = encode(
            "Options",
            "config_path: \"/etc/strata/fast.toml\" config_body: \"default_class = \\\"fast\\\"\\n\"",
        );
        let escaped: String = value.iter().map(|b| format!("\\{b:03o}")).collect();
        let any_bytes = encode(
            "Any",
            &format!(
                "type_url: \"type.googleapis.com/runtimeoptions.v1.Options\" value: \"{escaped}\""
            ),
        );
        let got = RuntimeOptions::from_any_bytes(&any_bytes)
            .expect("valid")
            .expect("options");
        assert_eq!(got.config_path, "/etc/strata/fast.toml");
        assert_eq!(got.config_body, b"default_class = \"fast\"\n");
        assert_eq!(got.type_url, "");
    }
}
