//! Each built binary imports nothing outside the world its flavour targets (`wit/world.wit`).

use bridge_host::{Flavour, check_world, component_imports, wasm_path};

#[test]
fn spin_flavour_stays_inside_bridge_spin() {
    assert_eq!(check_world(wasm_path(Flavour::Spin), "bridge-spin"), Ok(()));
}

#[test]
fn noatomics_flavour_stays_inside_bridge_spin_noatomics() {
    assert_eq!(
        check_world(wasm_path(Flavour::SpinNoAtomics), "bridge-spin-noatomics"),
        Ok(())
    );
    // It really is the build without atomics, and the default build really has them.
    let imports = component_imports(wasm_path(Flavour::SpinNoAtomics));
    assert!(
        imports.iter().all(|i| !i.starts_with("wasi:keyvalue")),
        "{imports:?}"
    );
    let spin = component_imports(wasm_path(Flavour::Spin));
    assert!(
        spin.iter()
            .any(|i| i.starts_with("wasi:keyvalue/atomics@0.2.0-draft2")),
        "{spin:?}"
    );
    assert!(check_world(wasm_path(Flavour::Spin), "bridge-spin-noatomics").is_err());
}

#[test]
fn portable_flavour_stays_inside_bridge_wasi() {
    assert_eq!(check_world(wasm_path(Flavour::Wasi), "bridge-wasi"), Ok(()));
}

#[test]
fn portable_flavour_imports_nothing_of_spin() {
    let imports = component_imports(wasm_path(Flavour::Wasi));
    assert!(
        imports.iter().all(|i| !i.starts_with("fermyon:")),
        "{imports:?}"
    );
    // ...and would therefore fail the Spin world's extra checks if it did: the Spin flavour
    // really imports the variables interface it is checked for.
    let spin = component_imports(wasm_path(Flavour::Spin));
    assert!(
        spin.iter()
            .any(|i| i.starts_with("fermyon:spin/variables@2.0")),
        "{spin:?}"
    );
    // The portable flavour must not pass as the Spin world's superset check in reverse:
    // the Spin binary is not inside the portable world.
    assert!(check_world(wasm_path(Flavour::Spin), "bridge-wasi").is_err());
}
