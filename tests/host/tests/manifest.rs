//! The manifests: production reaches only Kraken, every setting is declared and wired,
//! secrets are marked, and the declared defaults form a usable configuration.

use bridge_host::workspace_root;
use toml::Value;
use tv_kraken_bridge::config::{Config, SECRET_SETTINGS, SETTINGS};

fn manifest(name: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(name)).unwrap();
    toml::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn check_variables(m: &Value) {
    let declared = m["variables"].as_table().unwrap();
    let wired = m["component"]["bridge"]["variables"].as_table().unwrap();
    for name in SETTINGS {
        let decl = declared
            .get(*name)
            .unwrap_or_else(|| panic!("{name} not declared"));
        assert_eq!(
            wired.get(*name).and_then(Value::as_str),
            Some(format!("{{{{ {name} }}}}").as_str()),
            "{name} not wired to the component"
        );
        let secret = decl.get("secret").and_then(Value::as_bool).unwrap_or(false);
        assert_eq!(
            secret,
            SECRET_SETTINGS.contains(name),
            "{name}: secret flag"
        );
        assert!(
            decl.get("required").is_some() || decl.get("default").is_some(),
            "{name}: Spin needs a default or required"
        );
    }
    assert_eq!(
        declared.len(),
        SETTINGS.len(),
        "a declared variable the bridge never reads"
    );
    assert_eq!(wired.len(), SETTINGS.len());
}

#[test]
fn production_manifest() {
    let m = manifest("spin.toml");
    let c = &m["component"]["bridge"];
    // Kraken, and the app's own store component (service chaining).
    assert_eq!(
        strings(&c["allowed_outbound_hosts"]),
        [
            "https://api.kraken.com",
            "http://bridge-store.spin.internal"
        ]
    );
    assert_eq!(strings(&c["key_value_stores"]), ["default"]);
    assert_eq!(c["source"].as_str(), Some("target/wasm/bridge-spin.wasm"));
    check_variables(&m);
    for name in ["webhook_secret", "kraken_api_key", "kraken_api_secret"] {
        assert_eq!(
            m["variables"][name]["required"].as_bool(),
            Some(true),
            "{name}"
        );
    }
    assert_eq!(
        m["variables"]["environment"]["default"].as_str(),
        Some("production")
    );
    assert_eq!(
        m["variables"]["kraken_api_url"]["default"].as_str(),
        Some("https://api.kraken.com")
    );
}

#[test]
fn local_manifest_reaches_only_the_simulator() {
    let m = manifest("spin.local.toml");
    let c = &m["component"]["bridge"];
    assert_eq!(
        strings(&c["allowed_outbound_hosts"]),
        [
            "http://127.0.0.1:18081",
            "http://bridge-store.spin.internal"
        ]
    );
    assert_eq!(
        m["variables"]["kraken_api_url"]["default"].as_str(),
        Some("http://127.0.0.1:18081")
    );
    check_variables(&m);
}

#[test]
fn declared_defaults_are_a_usable_configuration() {
    let m = manifest("spin.toml");
    let vars = m["variables"].as_table().unwrap().clone();
    let config = Config::from_lookup(|name| match name {
        "webhook_secret" => Some("0123456789abcdef0123456789abcdef".into()),
        "kraken_api_key" => Some("kraken-api-key-0123".into()),
        "kraken_api_secret" => Some(kraken_sim::Account::TEST_API_SECRET.into()),
        _ => vars.get(name)?.get("default")?.as_str().map(str::to_string),
    });
    assert!(config.is_usable(), "{:?}", config.problems);
    assert!(config.trading_enabled);
    assert!(!config.dry_run);
}
