//! Turns configuration text into a [`Config`], translating every failure
//! into a [`ConfigError`] that names the source, line and dotted key.
//!
//! Parsing runs in three steps: a plain TOML parse (syntax errors), a serde
//! pass into the raw schema with path tracking (unknown and missing keys,
//! wrong types, bad class names), then semantic checks on the raw values
//! (backend names, `default_class`).

use std::collections::BTreeMap;
use std::ops::Range;

use serde_path_to_error::Segment;

use crate::error::{ConfigError, Location};
use crate::options::{check_interpose, check_microvm, OptionProblem};
use crate::schema::{BackendKind, Class, Config, RawConfig, INVALID_CLASS_NAME};
use crate::source::ConfigSource;

/// Prefix of the map keys `toml::Spanned` uses internally; they are not part
/// of the user's key path.
const SPANNED_KEY_PREFIX: &str = "$__serde_spanned";

/// Parses UTF-8 bytes; invalid UTF-8 is reported as a syntax error at the
/// line of the first bad byte.
pub(crate) fn parse_bytes(bytes: &[u8], source: ConfigSource) -> Result<Config, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text, source),
        Err(err) => {
            let valid = &bytes[..err.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            Err(ConfigError::Syntax {
                at: Location { source, line },
                message: format!("invalid UTF-8 at byte {}", err.valid_up_to()),
            })
        }
    }
}

/// Parses and validates configuration text.
pub(crate) fn parse(text: &str, source: ConfigSource) -> Result<Config, ConfigError> {
    if let Err(err) = text.parse::<toml::Table>() {
        return Err(ConfigError::Syntax {
            at: location(&source, text, err.span()),
            message: one_line(err.message()),
        });
    }

    let raw: RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|err| schema_error(&source, text, err))?;

    let mut classes = BTreeMap::new();
    for (name, raw_class) in raw.classes {
        let name = name.0;
        let backend_text = raw_class.backend.get_ref();
        let Some(backend) = BackendKind::from_name(backend_text) else {
            return Err(ConfigError::UnknownBackend {
                at: location(&source, text, Some(raw_class.backend.span())),
                key: format!("classes.{name}.backend"),
                value: backend_text.clone(),
            });
        };
        let mut class = Class::new(name.clone(), backend);
        // A misplaced table is reported at the class's `backend` line.
        let span = raw_class.backend.span();
        if let Some(table) = raw_class.interpose {
            if backend != BackendKind::Interpose {
                return Err(misplaced_table(
                    &source,
                    text,
                    span,
                    &name,
                    "interpose",
                    backend,
                ));
            }
            let options =
                check_interpose(table).map_err(|p| option_error(&source, text, &name, p))?;
            class.interpose = Some(options);
        }
        if let Some(table) = raw_class.microvm {
            if backend != BackendKind::Microvm {
                return Err(misplaced_table(
                    &source, text, span, &name, "microvm", backend,
                ));
            }
            let options =
                check_microvm(table).map_err(|p| option_error(&source, text, &name, p))?;
            class.microvm = Some(options);
        }
        classes.insert(name, class);
    }

    let default_class = raw.default_class.get_ref();
    if !classes.contains_key(default_class) {
        return Err(ConfigError::UndefinedDefaultClass {
            at: location(&source, text, Some(raw.default_class.span())),
            value: default_class.clone(),
            defined: classes.keys().cloned().collect(),
        });
    }

    Ok(Config {
        source,
        default_class: default_class.clone(),
        classes,
    })
}

/// A backend's options table under a class of another backend.
fn misplaced_table(
    source: &ConfigSource,
    text: &str,
    span: Range<usize>,
    class: &str,
    table: &str,
    backend: BackendKind,
) -> ConfigError {
    ConfigError::InvalidValue {
        at: location(source, text, Some(span)),
        key: format!("classes.{class}.{table}"),
        message: format!(
            "the {table} table applies only to classes of backend {table:?}; this class's backend is {:?}",
            backend.as_str()
        ),
    }
}

/// A semantic problem inside an options table, with its full key.
fn option_error(
    source: &ConfigSource,
    text: &str,
    class: &str,
    problem: OptionProblem,
) -> ConfigError {
    ConfigError::InvalidValue {
        at: location(source, text, Some(problem.span)),
        key: format!("classes.{class}.{}", problem.key),
        message: problem.message,
    }
}

/// Classifies an error from the serde pass. The messages matched here are
/// the fixed wording serde uses for `unknown_field` and `missing_field`, and
/// this crate's own class-name check.
fn schema_error(
    source: &ConfigSource,
    text: &str,
    err: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let mut path: Vec<String> = err
        .path()
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } if key.starts_with(SPANNED_KEY_PREFIX) => None,
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(format!("[{index}]")),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => Some("?".to_owned()),
        })
        .collect();
    let err = err.into_inner();
    let at = location(source, text, err.span());
    let message = err.message();

    if message == INVALID_CLASS_NAME {
        let name = path.last().cloned().unwrap_or_default();
        return ConfigError::InvalidClassName {
            at,
            key: render_key(&path),
            name,
        };
    }
    if message.starts_with("unknown field `") {
        let expected = message
            .split_once(", expected ")
            .map(|(_, keys)| keys.to_owned());
        return ConfigError::UnknownKey {
            at,
            key: render_key(&path),
            expected,
        };
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        path.push(field.to_owned());
        return ConfigError::MissingKey {
            at,
            key: render_key(&path),
        };
    }
    ConfigError::InvalidValue {
        at,
        key: render_key(&path),
        message: one_line(message),
    }
}

/// Joins key segments with dots, quoting any segment that is not a bare
/// TOML key so that `classes."a.b"` stays unambiguous.
fn render_key(path: &[String]) -> String {
    if path.is_empty() {
        return "(top level)".to_owned();
    }
    let mut out = String::new();
    for (i, segment) in path.iter().enumerate() {
        let is_index = segment.starts_with('[');
        if i > 0 && !is_index {
            out.push('.');
        }
        let bare = !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if bare || is_index {
            out.push_str(segment);
        } else {
            out.push_str(&format!("{segment:?}"));
        }
    }
    out
}

fn location(source: &ConfigSource, text: &str, span: Option<Range<usize>>) -> Location {
    Location::at_offset(source, text, span.map_or(0, |span| span.start))
}

/// Parser messages can span several lines; error messages stay on one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::PathOrigin;
    use std::path::Path;

    fn file() -> ConfigSource {
        ConfigSource::File {
            path: "/etc/strata/test.toml".into(),
            origin: PathOrigin::DefaultPath,
        }
    }

    fn parse_err(text: &str) -> ConfigError {
        match parse(text, file()) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(err) => err,
        }
    }

    /// Asserts the message names the source, the line and every fragment.
    fn assert_message(err: &ConfigError, line: usize, fragments: &[&str]) {
        let msg = err.to_string();
        let prefix = format!("/etc/strata/test.toml:{line}:");
        assert!(
            msg.starts_with(&prefix),
            "{msg:?} should start with {prefix:?}"
        );
        for fragment in fragments {
            assert!(
                msg.contains(fragment),
                "{msg:?} should contain {fragment:?}"
            );
        }
        assert_eq!(err.location().map(|at| at.line), Some(line));
    }

    #[test]
    fn valid_config_parses() {
        let text = "default_class = \"fast\"\n\
                    [classes.fast]\nbackend = \"microvm\"\n\
                    [classes.safe-2]\nbackend = \"interpose\"\n";
        let config = parse(text, file()).expect("valid config");
        assert_eq!(config.default_class(), "fast");
        assert_eq!(config.class_names(), ["fast", "safe-2"]);
        assert_eq!(
            config.class("fast").map(|c| c.backend),
            Some(BackendKind::Microvm)
        );
        assert_eq!(config.source(), &file());
    }

    #[test]
    fn inline_and_dotted_tables_are_accepted() {
        let text = "default_class = \"a\"\n\
                    classes.a.backend = \"native\"\n\
                    classes.b = { backend = \"microvm\" }\n";
        let config = parse(text, file()).expect("valid config");
        assert_eq!(
            config.class("b").map(|c| c.backend),
            Some(BackendKind::Microvm)
        );
    }

    #[test]
    fn syntax_error_names_source_and_line() {
        let err = parse_err("default_class = \"native\"\n[classes.native]\nbackend = \n");
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert_message(&err, 3, &["TOML syntax error"]);
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn duplicate_table_is_a_syntax_error() {
        let err = parse_err(
            "default_class = \"native\"\n[classes.native]\nbackend = \"native\"\n[classes.native]\n",
        );
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert_message(&err, 4, &["duplicate key"]);
    }

    #[test]
    fn invalid_utf8_is_a_syntax_error_with_line() {
        let err = match parse_bytes(b"default_class = \"x\"\n# \xff\n", file()) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(err) => err,
        };
        assert_message(&err, 2, &["invalid UTF-8"]);
    }

    #[test]
    fn unknown_key_in_class_names_dotted_key_and_line() {
        let err = parse_err("default_class = \"native\"\n[classes.native]\nbakend = \"native\"\n");
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err:?}");
        assert_message(
            &err,
            3,
            &["unknown key `classes.native.bakend`", "`backend`"],
        );
    }

    #[test]
    fn unknown_key_in_inline_and_dotted_forms() {
        let err =
            parse_err("default_class = \"a\"\n[classes]\n\na = { backend = \"native\", x = 1 }\n");
        assert_message(&err, 4, &["unknown key `classes.a.x`"]);
        let err = parse_err("default_class = \"a\"\nclasses.a.bakend = 1\n");
        assert_message(&err, 2, &["unknown key `classes.a.bakend`"]);
    }

    #[test]
    fn unknown_top_level_key() {
        let err = parse_err("default_class = \"native\"\n\ndefaultclass = \"x\"\n");
        assert_message(&err, 3, &["unknown key `defaultclass`", "`default_class`"]);
    }

    #[test]
    fn unknown_subtable_of_class() {
        let err = parse_err(
            "default_class = \"a\"\n[classes.a]\nbackend = \"native\"\n[classes.a.gpu]\nx = 1\n",
        );
        assert_message(&err, 4, &["unknown key `classes.a.gpu`"]);
    }

    const INTERPOSE_CLASS: &str = r#"default_class = "sandboxed"
[classes.sandboxed]
backend = "interpose"
[classes.sandboxed.interpose]
hidden = ["/etc/shadow", "/root"]
read_only = ["/etc"]
kernel_release = "5.15.0-strata"
allow_syscalls = ["mount"]
[classes.sandboxed.interpose.network]
default = "deny"
allow = ["127.0.0.1/32:8080"]
deny = ["169.254.169.254/32"]
"#;

    #[test]
    fn interpose_options_are_read() {
        let config = parse(INTERPOSE_CLASS, file()).unwrap();
        let class = config.class("sandboxed").unwrap();
        let options = class.interpose.as_ref().unwrap();
        assert_eq!(
            options.hidden,
            [Path::new("/etc/shadow"), Path::new("/root")]
        );
        assert_eq!(options.read_only, [Path::new("/etc")]);
        assert_eq!(options.kernel_release.as_deref(), Some("5.15.0-strata"));
        assert_eq!(options.allow_syscalls, ["mount"]);
        assert_eq!(options.network.default, crate::NetDefault::Deny);
        assert_eq!(options.network.allow, ["127.0.0.1/32:8080"]);
        assert_eq!(options.network.deny, ["169.254.169.254/32"]);
        assert_eq!(class.microvm, None);
    }

    #[test]
    fn a_class_without_its_table_gets_the_defaults() {
        let config = parse(
            "default_class = \"i\"\n[classes.i]\nbackend = \"interpose\"\n\
             [classes.m]\nbackend = \"microvm\"\n[classes.n]\nbackend = \"native\"\n",
            file(),
        )
        .unwrap();
        let interpose = config.class("i").unwrap();
        assert_eq!(interpose.interpose, Some(Default::default()));
        assert_eq!(interpose.microvm, None);
        let microvm = config.class("m").unwrap();
        assert_eq!(microvm.microvm, Some(crate::MicrovmOptions::default()));
        let native = config.class("n").unwrap();
        assert_eq!(
            (native.interpose.as_ref(), native.microvm.as_ref()),
            (None, None)
        );
    }

    #[test]
    fn a_table_of_another_backend_is_refused() {
        let err = parse_err(
            "default_class = \"a\"\n[classes.a]\nbackend = \"native\"\n[classes.a.microvm]\nvcpus = 2\n",
        );
        assert_message(
            &err,
            3,
            &["classes.a.microvm", "backend \"microvm\"", "\"native\""],
        );
    }

    #[test]
    fn a_subtable_header_alone_makes_the_table() {
        let text = "default_class = \"x\"\n[classes.x]\nbackend = \"interpose\"\n\
                    [classes.x.interpose.network]\ndeny = [\"10.0.0.0/8\"]\n";
        let config = parse(text, file()).unwrap();
        let options = config.class("x").unwrap().interpose.clone().unwrap();
        assert_eq!(options.network.deny, ["10.0.0.0/8"]);
    }

    #[test]
    fn interpose_values_are_checked_where_they_are() {
        let relative = INTERPOSE_CLASS.replace("\"/root\"", "\"root\"");
        assert_message(
            &parse_err(&relative),
            5,
            &[
                "classes.sandboxed.interpose.hidden[1]",
                "\"root\" is not an absolute path",
            ],
        );
        let dotdot =
            INTERPOSE_CLASS.replace("read_only = [\"/etc\"]", "read_only = [\"/etc/../x\"]");
        assert_message(
            &parse_err(&dotdot),
            6,
            &["classes.sandboxed.interpose.read_only[0]", "`..`"],
        );
        let spaced = INTERPOSE_CLASS.replace("\"mount\"", "\"mo unt\"");
        assert_message(&parse_err(&spaced), 8, &["interpose.allow_syscalls[0]"]);
        let long = INTERPOSE_CLASS.replace("5.15.0-strata", &"9".repeat(65));
        assert_message(&parse_err(&long), 7, &["interpose.kernel_release"]);
        let bad_default = INTERPOSE_CLASS.replace("\"deny\"\n", "\"maybe\"\n");
        assert_message(
            &parse_err(&bad_default),
            10,
            &["classes.sandboxed.interpose.network.default", "maybe"],
        );
        let typo = INTERPOSE_CLASS.replace("hidden =", "hiden =");
        assert_message(
            &parse_err(&typo),
            5,
            &["unknown key `classes.sandboxed.interpose.hiden`"],
        );
    }

    #[test]
    fn microvm_options_are_read_and_checked() {
        let text = "default_class = \"vm\"\n[classes.vm]\nbackend = \"microvm\"\n\
                    [classes.vm.microvm]\nhypervisor = \"qemu\"\nvcpus = 2\nmemory_mib = 512\n\
                    kernel = \"/k\"\n";
        let config = parse(text, file()).unwrap();
        let options = config.class("vm").unwrap().microvm.clone().unwrap();
        assert_eq!(options.hypervisor, crate::Hypervisor::Qemu);
        assert_eq!((options.vcpus, options.memory_mib), (2, 512));
        assert_eq!(options.kernel.as_deref(), Some(Path::new("/k")));
        assert_eq!(
            options.initramfs,
            crate::MicrovmOptions::default().initramfs
        );

        assert_message(
            &parse_err(&text.replace("vcpus = 2", "vcpus = 0")),
            6,
            &["microvm.vcpus", "0"],
        );
        assert_message(
            &parse_err(&text.replace("memory_mib = 512", "memory_mib = 8")),
            7,
            &["microvm.memory_mib", "minimum of 64"],
        );
        assert_message(
            &parse_err(&text.replace("\"/k\"", "\"k\"")),
            8,
            &["microvm.kernel"],
        );
        assert_message(
            &parse_err(&text.replace("\"qemu\"", "\"xen\"")),
            5,
            &["classes.vm.microvm.hypervisor", "xen"],
        );
    }

    #[test]
    fn unknown_backend_names_value_and_allowed_ones() {
        let err = parse_err("default_class = \"fast\"\n[classes.fast]\n\nbackend = \"kvm\"\n");
        assert!(matches!(err, ConfigError::UnknownBackend { .. }), "{err:?}");
        assert_message(
            &err,
            4,
            &[
                "`classes.fast.backend`",
                "\"kvm\"",
                "native, interpose, microvm",
            ],
        );
    }

    #[test]
    fn missing_backend_names_key_and_class_line() {
        let err = parse_err("default_class = \"fast\"\n\n[classes.fast]\n");
        assert!(matches!(err, ConfigError::MissingKey { .. }), "{err:?}");
        assert_message(&err, 3, &["missing required key `classes.fast.backend`"]);
    }

    #[test]
    fn missing_default_class_points_at_top() {
        let err = parse_err("[classes.fast]\nbackend = \"native\"\n");
        assert_message(&err, 1, &["missing required key `default_class`"]);
    }

    #[test]
    fn undefined_default_class_lists_defined_classes() {
        let err = parse_err(
            "[classes.b]\nbackend = \"native\"\n[classes.a]\nbackend = \"microvm\"\n\ndefault_class = \"fast\"\n",
        );
        // `default_class` after a table header belongs to that table.
        assert_message(&err, 6, &["unknown key `classes.a.default_class`"]);

        let err = parse_err(
            "\ndefault_class = \"fast\"\n[classes.b]\nbackend = \"native\"\n[classes.a]\nbackend = \"microvm\"\n",
        );
        assert!(
            matches!(err, ConfigError::UndefinedDefaultClass { .. }),
            "{err:?}"
        );
        assert_message(
            &err,
            2,
            &["`default_class`", "\"fast\"", "defined classes: a, b"],
        );
    }

    #[test]
    fn undefined_default_class_with_no_classes() {
        let err = parse_err("default_class = \"native\"\n");
        assert_message(
            &err,
            1,
            &["`default_class`", "\"native\"", "defined classes: (none)"],
        );
    }

    #[test]
    fn invalid_class_names_are_rejected_at_their_line() {
        for (name, key) in [
            ("Fast", "classes.Fast"),
            ("\"a.b\"", "classes.\"a.b\""),
            ("a_b", "classes.a_b"),
            ("\"\"", "classes.\"\""),
        ] {
            let text = format!("default_class = \"x\"\n\n[classes.{name}]\nbackend = \"native\"\n");
            let err = parse_err(&text);
            assert!(
                matches!(err, ConfigError::InvalidClassName { .. }),
                "{err:?}"
            );
            assert_message(&err, 3, &[&format!("`{key}`"), "invalid class name"]);
        }
    }

    #[test]
    fn wrong_value_types_name_the_key() {
        let err = parse_err("default_class = \"a\"\n[classes.a]\nbackend = 3\n");
        assert!(matches!(err, ConfigError::InvalidValue { .. }), "{err:?}");
        assert_message(&err, 3, &["`classes.a.backend`", "integer"]);

        let err = parse_err("default_class = 1\n");
        assert_message(&err, 1, &["`default_class`"]);

        let err = parse_err("default_class = \"a\"\nclasses = 4\n");
        assert_message(&err, 2, &["`classes`"]);

        let err = parse_err("default_class = \"a\"\n[classes]\na = \"native\"\n");
        assert_message(&err, 3, &["`classes.a`"]);
    }

    #[test]
    fn inline_body_source_is_named() {
        let err = match parse(
            "default_class = \"x\"\n[classes.x]\nbakend = 1\n",
            ConfigSource::RuntimeOptionsBody,
        ) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(err) => err,
        };
        let msg = err.to_string();
        assert!(msg.starts_with("runtime options ConfigBody:3:"), "{msg}");
        assert!(msg.contains("classes.x.bakend"), "{msg}");
    }

    #[test]
    fn keys_render_with_quotes_when_needed() {
        let path = |p: &[&str]| render_key(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(path(&["classes", "a", "backend"]), "classes.a.backend");
        assert_eq!(path(&["classes", "a.b"]), "classes.\"a.b\"");
        assert_eq!(path(&["classes", "x", "[0]"]), "classes.x[0]");
        assert_eq!(path(&[]), "(top level)");
    }
}
