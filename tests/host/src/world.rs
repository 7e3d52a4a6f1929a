//! World check: does a component import only what its target world in the
//! repository's `wit/` directory allows?
//!
//! Interface names are compared as `namespace:package/interface`; versions
//! are compatible when equal, or when neither is a pre-release and they share
//! the major version and, for `0.x`, the minor version (so any `wasi:*@0.2.y`
//! import satisfies a world's `@0.2.0`, as wasmtime links them).

use std::path::Path;

use anyhow::Context as _;
use wit_parser::{Resolve, WorldItem, WorldKey};

use crate::engine::{compiled_component, engine};

/// Names of everything `path` imports, e.g. `wasi:http/outgoing-handler@0.2.0`,
/// sorted. Compiles the component (cached per process).
///
/// # Panics
///
/// If the component cannot be read or compiled.
pub fn component_imports(path: impl AsRef<Path>) -> Vec<String> {
    let path = path.as_ref();
    let component = compiled_component(path)
        .unwrap_or_else(|e| panic!("cannot load component {}: {e:?}", path.display()));
    let mut names: Vec<String> = component
        .component_type()
        .imports(engine())
        .map(|(name, _)| name.to_string())
        .collect();
    names.sort();
    names
}

/// Interfaces imported by `world` of the repository's `wit/` package
/// (`includes` and transitive `use`s resolved), as `ns:pkg/iface@version`,
/// sorted. Inline (unnamed) interfaces and functions appear by plain name.
///
/// # Panics
///
/// If `wit/` does not parse or has no such world.
pub fn world_imports(world: &str) -> Vec<String> {
    try_world_imports(world).unwrap_or_else(|e| panic!("world {world:?}: {e:?}"))
}

fn try_world_imports(world: &str) -> anyhow::Result<Vec<String>> {
    let dir = crate::workspace_root().join("wit");
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_path(&dir)
        .with_context(|| format!("parsing {}", dir.display()))?;
    let world_id = resolve.select_world(&[pkg], Some(world))?;
    let mut names: Vec<String> = resolve.worlds[world_id]
        .imports
        .iter()
        .filter(|(_, item)| !matches!(item, WorldItem::Type { .. }))
        .map(|(key, _)| match key {
            WorldKey::Interface(id) => resolve.id_of(*id).unwrap_or_default(),
            WorldKey::Name(name) => name.clone(),
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Split `ns:pkg/iface@1.2.3` into (`ns:pkg/iface`, `Some("1.2.3")`).
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    }
}

/// Whether an import at version `have` is satisfied by a world's `want`.
fn versions_compatible(have: Option<&str>, want: Option<&str>) -> bool {
    match (have, want) {
        (None, None) => true,
        (Some(have), Some(want)) => {
            if have == want {
                return true;
            }
            let (Ok(have), Ok(want)) = (semver::Version::parse(have), semver::Version::parse(want))
            else {
                return false;
            };
            if !have.pre.is_empty() || !want.pre.is_empty() {
                return false;
            }
            have.major == want.major && (have.major != 0 || have.minor == want.minor)
        }
        _ => false,
    }
}

/// Check that every import of the component at `path` is allowed by `world`.
///
/// Returns the imports the world does not allow; on failure both lists are
/// printed to stderr.
pub fn check_world(path: impl AsRef<Path>, world: &str) -> Result<(), Vec<String>> {
    let imports = component_imports(path.as_ref());
    let allowed = world_imports(world);
    let extra: Vec<String> = imports
        .iter()
        .filter(|import| {
            let (base, version) = split_version(import);
            !allowed.iter().any(|a| {
                let (a_base, a_version) = split_version(a);
                a_base == base && versions_compatible(version, a_version)
            })
        })
        .cloned()
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        eprintln!(
            "component {} imports what world {world:?} does not allow: {extra:#?}\ncomponent imports: {imports:#?}\nworld imports: {allowed:#?}",
            path.as_ref().display()
        );
        Err(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::{versions_compatible, world_imports};

    #[test]
    fn versions() {
        assert!(versions_compatible(Some("0.2.6"), Some("0.2.0")));
        assert!(versions_compatible(Some("0.2.0"), Some("0.2.6")));
        assert!(!versions_compatible(Some("0.3.0"), Some("0.2.0")));
        assert!(!versions_compatible(
            Some("0.2.0-rc-2023-10-18"),
            Some("0.2.0")
        ));
        assert!(versions_compatible(Some("2.0.0"), Some("2.1.0")));
        assert!(!versions_compatible(Some("3.0.0"), Some("2.0.0")));
        assert!(!versions_compatible(None, Some("2.0.0")));
    }

    #[test]
    fn worlds_parse() {
        let spin = world_imports("bridge-spin");
        for name in [
            "fermyon:spin/variables@2.0.0",
            "wasi:keyvalue/store@0.2.0-draft2",
            "wasi:keyvalue/atomics@0.2.0-draft2",
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:http/types@0.2.0",
            "wasi:io/streams@0.2.0",
            "wasi:cli/stdout@0.2.0",
        ] {
            assert!(spin.contains(&name.to_string()), "{name} not in {spin:#?}");
        }
        // Rust's std reads the environment in both flavours; filesystem and sockets are not
        // part of either world.
        assert!(spin.contains(&"wasi:cli/environment@0.2.0".to_string()));
        assert!(
            !spin
                .iter()
                .any(|n| n.starts_with("wasi:filesystem") || n.starts_with("wasi:sockets"))
        );
        assert!(
            !spin.contains(&"fermyon:spin/key-value@2.0.0".to_string()),
            "{spin:#?}"
        );
        let noatomics = world_imports("bridge-spin-noatomics");
        assert!(noatomics.contains(&"fermyon:spin/key-value@2.0.0".to_string()));
        assert!(
            !noatomics.iter().any(|n| n.starts_with("wasi:keyvalue")),
            "{noatomics:#?}"
        );
        let wasi = world_imports("bridge-wasi");
        assert!(wasi.contains(&"wasi:cli/environment@0.2.0".to_string()));
        assert!(!wasi.iter().any(|n| n.starts_with("fermyon:")), "{wasi:#?}");
    }
}
