//! Why a file is not a wasmon plugin, in the same words wherever it is
//! found out: the agent's loader (`plugins list`, the plugins API, the log)
//! and `wasmon plugin inspect` both classify a file with this module.
//!
//! The header check needs only the first [`HEADER_LEN`] bytes, so a caller
//! can refuse a huge file of random bytes before reading it all; and it
//! keeps text away from wasmtime, whose `wat` feature would otherwise answer
//! random bytes with a WebAssembly *text* parser's error.

use std::fmt;

/// Bytes of the WebAssembly preamble: `\0asm`, version (u16 LE), layer (u16 LE).
pub const HEADER_LEN: usize = 8;

const MAGIC: &[u8; 4] = b"\0asm";

/// The component binary format version this build reads (wasmparser's; the
/// pre-1.0 component model numbers its encodings 0xa, 0xb, 0xc, 0xd and will
/// restart at 0x1 when it is stabilized).
pub const COMPONENT_VERSION: u16 = 0xd;

const LAYER_CORE: u16 = 0;
const LAYER_COMPONENT: u16 = 1;

/// The contract package a component must be built against, with its version.
pub const CONTRACT_PACKAGE: &str = "wasmon:plugin";
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The function each world exports, which tells the worlds apart.
pub const WORLD_EXPORTS: [(&str, &str); 4] = [
    ("receiver", "notify"),
    ("health-check", "check"),
    ("rollback-action", "rollback"),
    ("metric-check", "evaluate"),
];

/// A file that cannot be a plugin of this wasmon, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAPlugin {
    #[error("empty file (0 bytes): not a WebAssembly component")]
    Empty,
    #[error(
        "truncated: {len} bytes, shorter than the {HEADER_LEN}-byte WebAssembly header \
         (an interrupted copy? write to a temporary name and rename)"
    )]
    Truncated { len: u64 },
    #[error(
        "not WebAssembly: a component starts with the bytes \\0asm, this file with {start} \
         (a .wasm file must be a binary WebAssembly component)"
    )]
    NotWasm { start: Preview },
    #[error(
        "a core WebAssembly module, not a component: wrap it with `wasm-tools component new` \
         (a wasm32-wasip1 module also needs `--adapt` with the WASI preview1 reactor adapter), \
         or build it for wasm32-wasip2 or with `wasmon plugin build`"
    )]
    CoreModule,
    #[error(
        "a WebAssembly component in binary format {version:#x}, an older pre-release encoding \
         this wasmon does not read (it reads {COMPONENT_VERSION:#x}): rebuild it with current \
         tools (`wasmon plugin build`, cargo for wasm32-wasip2, wasm-tools)"
    )]
    ComponentTooOld { version: u16 },
    #[error(
        "a WebAssembly component in binary format {version:#x}, which this wasmon does not read \
         yet (it reads {COMPONENT_VERSION:#x}): upgrade wasmon, or build it with tools of \
         wasmon's generation"
    )]
    ComponentTooNew { version: u16 },
    #[error(
        "WebAssembly of an unknown kind (version {version:#x}, layer {layer}): not a component"
    )]
    UnknownLayer { version: u16, layer: u16 },
    #[error(
        "a component for another world, not a wasmon plugin: it exports {}; a plugin exports \
         exactly one of {} (worlds of {CONTRACT_PACKAGE}@{CONTRACT_VERSION})",
        list_or_nothing(.exports), expected_exports()
    )]
    OtherWorld { exports: Vec<String> },
    #[error(
        "built against {CONTRACT_PACKAGE}@{found} (it imports {import}), {}: this wasmon \
         implements {CONTRACT_PACKAGE}@{CONTRACT_VERSION}; rebuild it against that",
        if *.newer { "newer than this wasmon" } else { "older than this wasmon" }
    )]
    OtherContractVersion {
        found: String,
        import: String,
        newer: bool,
    },
}

/// The first bytes of a file, for a message: text when they are printable,
/// hex otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview(Vec<u8>);

impl fmt::Display for Preview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self
            .0
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        {
            write!(f, "{:?}", String::from_utf8_lossy(&self.0))
        } else {
            f.write_str("0x")?;
            self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
        }
    }
}

fn list_or_nothing(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

fn expected_exports() -> String {
    WORLD_EXPORTS
        .map(|(world, export)| format!("`{export}` ({world})"))
        .join(", ")
}

/// Classifies a file by its first bytes: `Ok` when it is a component in the
/// binary format this wasmon reads. `head` is the file's first
/// [`HEADER_LEN`] bytes (or all of it when shorter), `len` its full size.
pub fn check_header(head: &[u8], len: u64) -> Result<(), NotAPlugin> {
    if len == 0 {
        return Err(NotAPlugin::Empty);
    }
    let head = &head[..head.len().min(HEADER_LEN)];
    if head.len() < HEADER_LEN {
        // Only a prefix of a real preamble is "truncated"; anything else
        // short is simply not WebAssembly.
        return Err(if MAGIC.starts_with(head) || head.starts_with(MAGIC) {
            NotAPlugin::Truncated { len }
        } else {
            NotAPlugin::NotWasm {
                start: Preview(head.to_vec()),
            }
        });
    }
    if !head.starts_with(MAGIC) {
        return Err(NotAPlugin::NotWasm {
            start: Preview(head.to_vec()),
        });
    }
    let version = u16::from_le_bytes([head[4], head[5]]);
    let layer = u16::from_le_bytes([head[6], head[7]]);
    match layer {
        LAYER_CORE => Err(NotAPlugin::CoreModule),
        LAYER_COMPONENT if version == COMPONENT_VERSION => Ok(()),
        LAYER_COMPONENT if (0xa..COMPONENT_VERSION).contains(&version) => {
            Err(NotAPlugin::ComponentTooOld { version })
        }
        LAYER_COMPONENT => Err(NotAPlugin::ComponentTooNew { version }),
        _ => Err(NotAPlugin::UnknownLayer { version, layer }),
    }
}

/// The header check on a whole file's bytes.
pub fn check_bytes(bytes: &[u8]) -> Result<(), NotAPlugin> {
    check_header(bytes, bytes.len() as u64)
}

/// Refuses a component whose imports name a version of the contract this
/// wasmon cannot link (the linker would only say an import is missing).
/// Versions link when they are semver-compatible, as wasmtime matches them:
/// same major, or for 0.x the same minor.
pub fn check_contract_version<'a>(
    imports: impl IntoIterator<Item = &'a str>,
) -> Result<(), NotAPlugin> {
    let ours = parse_version(CONTRACT_VERSION).expect("CONTRACT_VERSION is a version");
    for import in imports {
        let Some(rest) = import
            .strip_prefix(CONTRACT_PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let Some((_, version)) = rest.split_once('@') else {
            continue;
        };
        let Some(theirs) = parse_version(version) else {
            continue;
        };
        let compatible = match (ours, theirs) {
            ((0, a, _), (0, b, _)) => a == b,
            ((a, _, _), (b, _, _)) => a == b,
        };
        if !compatible {
            return Err(NotAPlugin::OtherContractVersion {
                found: version.to_string(),
                import: import.to_string(),
                newer: theirs > ours,
            });
        }
    }
    Ok(())
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    // Pre-release and build suffixes do not change compatibility here.
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u16, layer: u16) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend(version.to_le_bytes());
        h.extend(layer.to_le_bytes());
        h
    }

    #[test]
    fn the_supported_header_is_the_one_wasmparser_reads() {
        let h = header(COMPONENT_VERSION, LAYER_COMPONENT);
        assert!(wasmparser::Parser::is_component(&h));
        assert_eq!(check_bytes(&h), Ok(()));
        assert!(wasmparser::Parser::is_core_wasm(&header(1, LAYER_CORE)));
    }

    #[test]
    fn each_kind_of_non_plugin_gets_its_own_message() {
        assert_eq!(check_bytes(b""), Err(NotAPlugin::Empty));
        assert_eq!(check_bytes(b"\0as"), Err(NotAPlugin::Truncated { len: 3 }));
        assert_eq!(
            check_bytes(b"\0asm\x0d\0"),
            Err(NotAPlugin::Truncated { len: 6 })
        );
        let text = check_bytes(b"(component)\n").unwrap_err();
        assert!(matches!(text, NotAPlugin::NotWasm { .. }));
        assert!(text.to_string().contains("\"(compone\""), "{text}");
        let text = check_bytes(b"hi\n").unwrap_err();
        assert!(text.to_string().contains("\"hi\\n\""), "{text}");
        let random = check_bytes(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5]).unwrap_err();
        assert!(
            random.to_string().contains("0xdeadbeef01020304"),
            "{random}"
        );
        assert_eq!(
            check_bytes(b"hi"),
            Err(NotAPlugin::NotWasm {
                start: Preview(b"hi".to_vec())
            })
        );
        assert_eq!(check_bytes(&header(1, 0)), Err(NotAPlugin::CoreModule));
        assert!(NotAPlugin::CoreModule
            .to_string()
            .contains("wasm-tools component new"));
        assert_eq!(
            check_bytes(&header(0xc, 1)),
            Err(NotAPlugin::ComponentTooOld { version: 0xc })
        );
        assert_eq!(
            check_bytes(&header(0xe, 1)),
            Err(NotAPlugin::ComponentTooNew { version: 0xe })
        );
        // The stabilized component model restarts at version 1.
        assert_eq!(
            check_bytes(&header(0x1, 1)),
            Err(NotAPlugin::ComponentTooNew { version: 0x1 })
        );
        assert_eq!(
            check_bytes(&header(1, 7)),
            Err(NotAPlugin::UnknownLayer {
                version: 1,
                layer: 7
            })
        );
    }

    #[test]
    fn the_contract_version_must_link() {
        let ok = ["wasi:io/streams@0.2.0", "wasmon:plugin/log@0.1.0"];
        assert_eq!(check_contract_version(ok), Ok(()));
        assert_eq!(check_contract_version(["wasmon:plugin/log@0.1.7"]), Ok(()));
        let newer = check_contract_version(["wasmon:plugin/types@0.2.0"]).unwrap_err();
        assert!(
            matches!(&newer, NotAPlugin::OtherContractVersion { newer: true, found, .. } if found == "0.2.0"),
            "{newer:?}"
        );
        assert!(
            newer.to_string().contains("newer than this wasmon"),
            "{newer}"
        );
        let older = check_contract_version(["wasmon:plugin/types@0.0.9"]).unwrap_err();
        assert!(
            older.to_string().contains("older than this wasmon"),
            "{older}"
        );
    }

    #[test]
    fn the_constants_match_the_embedded_contract() {
        assert!(
            crate::PLUGIN_WIT.contains(&format!("package {CONTRACT_PACKAGE}@{CONTRACT_VERSION};"))
        );
        for (world, export) in WORLD_EXPORTS {
            let start = crate::PLUGIN_WIT
                .find(&format!("world {world} {{"))
                .unwrap_or_else(|| panic!("world {world}"));
            let body = &crate::PLUGIN_WIT[start..];
            let body = &body[..body.find("\n}").unwrap()];
            assert!(
                body.contains(&format!("export {export}:")),
                "{world}: {body}"
            );
        }
        assert_eq!(crate::WORLDS, WORLD_EXPORTS.map(|(w, _)| w));
    }
}
