//! The operator's deployment files (`deploy/`) and the README's "Deploying" section: every
//! manifest and runtime configuration parses, names exactly the bridge's settings
//! (`SETTINGS`, secrets from `SECRET_SETTINGS`) with spin.toml's defaults, uses only the
//! fields its reader knows (Spin v4.0.2's variable providers and key-value stores, the SpinApp
//! CRD of spin-operator v0.6.1), and the README's commands run as written where this machine
//! can run them: `wasmtime serve` always (when the CLI is installed), a fleet of two `spin up`
//! instances on Redis when `spin` is on PATH.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_host::{Flavour, RedisServer, find_wasmtime_cli, wasm_path, workspace_root};
use serde_json::{Value as Json, json};
use toml::Value;
use tv_kraken_bridge::config::{Config, SECRET_SETTINGS, SETTINGS};

// ---- reading the files ---------------------------------------------------------------------

fn root() -> PathBuf {
    workspace_root()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn toml_file(rel: &str) -> Value {
    toml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not TOML: {e}"))
}

/// A YAML document as JSON (the shape Kubernetes validates).
fn yaml_to_json(y: &yaml_rust2::Yaml) -> Json {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => json!(s.parse::<f64>().expect("a YAML real")),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(items) => Json::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => Json::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => panic!("a non-string YAML key: {other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Json::Null,
        Yaml::Alias(_) | Yaml::BadValue => panic!("an unresolved YAML node: {y:?}"),
    }
}

fn yaml_str(text: &str, what: &str) -> Json {
    let docs = yaml_rust2::YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("{what} is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "{what}: one YAML document");
    yaml_to_json(&docs[0])
}

fn yaml_file(rel: &str) -> Json {
    yaml_str(&read(rel), rel)
}

/// spin.toml's `[variables]`: the declared defaults (required ones have none).
fn spin_defaults() -> BTreeMap<String, Option<String>> {
    let m = toml_file("spin.toml");
    m["variables"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, decl)| {
            let default = decl.get("default").map(|d| d.as_str().unwrap().to_string());
            (name.clone(), default)
        })
        .collect()
}

fn is_secret(name: &str) -> bool {
    SECRET_SETTINGS.contains(&name)
}

fn is_required(name: &str) -> bool {
    spin_defaults()[name].is_none()
}

/// The value of a setting that is not a secret in every file that lists it: spin.toml's.
fn default_of(name: &str) -> String {
    spin_defaults()[name]
        .clone()
        .unwrap_or_else(|| panic!("{name} has no default in spin.toml"))
}

// ---- every file under deploy/ ---------------------------------------------------------------

/// Every file under `deploy/`, each checked by a test below.
const DEPLOY_FILES: &[&str] = &[
    "deploy/azure-key-vault/runtime-config.toml",
    "deploy/azure-key-vault/spin.toml",
    "deploy/fermyon-cloud/spin-noatomics.toml",
    "deploy/spin/runtime-config-redis.toml",
    "deploy/spinkube/runtime-config-secret.example.yaml",
    "deploy/spinkube/secret.example.yaml",
    "deploy/spinkube/spinapp.yaml",
    "deploy/vault/runtime-config.toml",
    "deploy/wasmtime/env.example",
];

fn files_under(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            let rel = path.strip_prefix(root()).unwrap();
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_manifest_and_runtime_configuration_parses() {
    let mut found = Vec::new();
    files_under(&root().join("deploy"), &mut found);
    found.sort();
    assert_eq!(
        found, DEPLOY_FILES,
        "deploy/ holds a file no test checks, or lost one"
    );
    for rel in ["spin.toml", "spin.local.toml"].iter().chain(DEPLOY_FILES) {
        if rel.ends_with(".toml") {
            toml_file(rel);
        } else if rel.ends_with(".yaml") {
            yaml_file(rel);
        } else {
            env_file(rel);
        }
    }
}

// ---- the README -----------------------------------------------------------------------------

/// The README section under `## {title}`, up to the next `## `.
fn readme_section(title: &str) -> String {
    let readme = read("README.md");
    let heading = format!("\n## {title}\n");
    let start = readme
        .find(&heading)
        .unwrap_or_else(|| panic!("README has no \"## {title}\" section"));
    let rest = &readme[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The fenced code blocks of a README section.
fn fenced_blocks(section: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(String::new()),
            }
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    assert!(current.is_none(), "an unclosed code block");
    blocks
}

/// The one fenced block of "Deploying" containing `needle`.
fn deploying_block(needle: &str) -> String {
    let blocks: Vec<_> = fenced_blocks(&readme_section("Deploying"))
        .into_iter()
        .filter(|b| b.contains(needle))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "README \"Deploying\": one code block with {needle:?}, found {blocks:#?}"
    );
    blocks.into_iter().next().unwrap()
}

/// Shell commands of a block: continuation lines joined, comments dropped, split on spaces.
fn commands(block: &str) -> Vec<Vec<String>> {
    block
        .replace("\\\n", " ")
        .lines()
        .map(|line| line.split(" #").next().unwrap().trim().to_string())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The backquoted words of a text.
fn backquoted(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_settings_table_lists_every_setting_with_spin_toml_defaults() {
    let section = readme_section("Settings");
    let mut listed = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (names, default_cell) = (backquoted(cells[1]), cells[2]);
        let mut expected_defaults = Vec::new();
        for name in &names {
            assert!(
                SETTINGS.contains(&name.as_str()),
                "README lists {name}, not a setting"
            );
            match spin_defaults()[name].as_deref() {
                None => assert!(
                    default_cell.contains("required"),
                    "{name}: spin.toml requires it, README's default is {default_cell:?}"
                ),
                Some("") => assert!(
                    default_cell.contains("unset") || default_cell.contains("empty"),
                    "{name}: spin.toml's default is empty, README's is {default_cell:?}"
                ),
                Some(d) => expected_defaults.push(d.to_string()),
            }
        }
        assert_eq!(
            backquoted(default_cell),
            expected_defaults,
            "README's defaults for {names:?} differ from spin.toml's"
        );
        listed.extend(names);
    }
    let unique: BTreeSet<_> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a setting listed twice");
    let settings: BTreeSet<_> = SETTINGS.iter().map(|s| s.to_string()).collect();
    assert_eq!(unique, settings, "README's settings table against SETTINGS");
}

#[test]
fn readme_deploying_names_every_deploy_file_and_only_existing_ones() {
    let section = readme_section("Deploying");
    for rel in DEPLOY_FILES {
        assert!(
            section.contains(rel),
            "README \"Deploying\" never names {rel}"
        );
    }
    for word in section.split(|c: char| c.is_whitespace() || "`()\"',;".contains(c)) {
        if let Some(start) = word.find("deploy/") {
            let path = word[start..].trim_end_matches(['.', ':']);
            assert!(
                root().join(path).exists(),
                "README \"Deploying\" names {path}, which does not exist"
            );
        }
    }
}

// ---- Spin manifests: the two variants in deploy/ are spin.toml with named differences ---------

/// spin.toml as a variant of it must be: `source` taken from `dir` (relative to the
/// manifest's directory) and the build section dropped (the variants are built by
/// scripts/build.sh from the repository root).
fn spin_toml_moved_to(dir: &str, wasm: &str) -> Value {
    let mut m = toml_file("spin.toml");
    let up = "../".repeat(Path::new(dir).components().count());
    for id in ["bridge", "bridge-store"] {
        let component = m["component"][id].as_table_mut().unwrap();
        component.remove("build");
        component.insert(
            "source".into(),
            Value::String(format!("{up}target/wasm/{wasm}")),
        );
    }
    m
}

/// spin.toml without its store component (the no-atomics build calls its store itself).
fn without_store_component(mut m: Value) -> Value {
    m["component"]
        .as_table_mut()
        .unwrap()
        .remove("bridge-store");
    m["trigger"]["http"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["component"].as_str() != Some("bridge-store"));
    let hosts = m["component"]["bridge"]["allowed_outbound_hosts"]
        .as_array_mut()
        .unwrap();
    hosts.retain(|h| h.as_str() != Some("http://bridge-store.spin.internal"));
    m
}

#[test]
fn spin_toml_has_the_private_store_component_the_bridge_chains_to() {
    for manifest in [
        "spin.toml",
        "spin.local.toml",
        "deploy/azure-key-vault/spin.toml",
    ] {
        let m = toml_file(manifest);
        let store = &m["component"]["bridge-store"];
        assert_eq!(
            store["variables"]["bridge_role"].as_str(),
            Some("store"),
            "{manifest}"
        );
        assert_eq!(
            store["source"], m["component"]["bridge"]["source"],
            "{manifest}: the same build"
        );
        assert_eq!(
            store["key_value_stores"], m["component"]["bridge"]["key_value_stores"],
            "{manifest}"
        );
        assert!(
            store.get("allowed_outbound_hosts").is_none(),
            "{manifest}: the store component reaches nothing"
        );
        let trigger = m["trigger"]["http"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["component"].as_str() == Some("bridge-store"))
            .unwrap_or_else(|| panic!("{manifest}: no trigger for the store component"));
        assert_eq!(
            trigger["route"]["private"].as_bool(),
            Some(true),
            "{manifest}: the store component must not be reachable from outside"
        );
        let hosts = m["component"]["bridge"]["allowed_outbound_hosts"]
            .as_array()
            .unwrap();
        assert!(
            hosts
                .iter()
                .any(|h| h.as_str() == Some("http://bridge-store.spin.internal")),
            "{manifest}: the bridge may reach its store component"
        );
    }
}

fn assert_source_resolves(manifest: &str, wasm: &str) {
    let m = toml_file(manifest);
    let source = m["component"]["bridge"]["source"].as_str().unwrap();
    let dir = Path::new(manifest).parent().unwrap();
    let resolved: PathBuf = dir.join(source).components().fold(PathBuf::new(), |p, c| {
        if c == std::path::Component::ParentDir {
            p.parent().unwrap().to_path_buf()
        } else {
            p.join(c)
        }
    });
    assert_eq!(
        resolved,
        Path::new("target/wasm").join(wasm),
        "{manifest}: source"
    );
}

#[test]
fn fermyon_cloud_fallback_is_spin_toml_on_the_no_atomics_build_with_900_keys() {
    let rel = "deploy/fermyon-cloud/spin-noatomics.toml";
    let mut expected = without_store_component(spin_toml_moved_to(
        "deploy/fermyon-cloud",
        "bridge-spin-noatomics.wasm",
    ));
    expected["variables"]["state_max_keys"]["default"] = Value::String("900".into());
    assert_eq!(
        toml_file(rel),
        expected,
        "{rel} differs from spin.toml beyond source, build, the store component and state_max_keys"
    );
    assert_source_resolves(rel, "bridge-spin-noatomics.wasm");
}

/// The name under which the Azure manifest declares a setting's application variable.
fn key_vault_name(setting: &str) -> String {
    if is_secret(setting) {
        setting.replace('_', "")
    } else {
        setting.to_string()
    }
}

/// Spin's variable-name rule (spinframework/spin v4.0.2 crates/expressions/src/lib.rs).
fn is_spin_variable_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !name.contains("__")
}

/// Azure Key Vault's secret-name rule: 1 to 127 of `0-9a-zA-Z-`.
fn is_key_vault_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

#[test]
fn azure_manifest_is_spin_toml_with_key_vault_names_for_the_secrets() {
    let rel = "deploy/azure-key-vault/spin.toml";
    let mut expected = spin_toml_moved_to("deploy/azure-key-vault", "bridge-spin.wasm");
    for secret in SECRET_SETTINGS {
        let name = key_vault_name(secret);
        assert!(is_spin_variable_name(&name), "{name}: not a Spin name");
        assert!(is_key_vault_name(&name), "{name}: not a Key Vault name");
        let declared = expected["variables"].as_table_mut().unwrap();
        let decl = declared.remove(*secret).unwrap();
        declared.insert(name.clone(), decl);
        expected["component"]["bridge"]["variables"][*secret] =
            Value::String(format!("{{{{ {name} }}}}"));
    }
    assert_eq!(
        toml_file(rel),
        expected,
        "{rel} differs from spin.toml beyond source, build and the secrets' names"
    );
    assert_source_resolves(rel, "bridge-spin.wasm");
}

// ---- runtime configurations -------------------------------------------------------------------

/// A runtime configuration that only puts the `default` store on Redis.
fn check_redis_runtime_config(rc: &Value, what: &str) -> String {
    let top: Vec<_> = rc.as_table().unwrap().keys().collect();
    assert_eq!(top, ["key_value_store"], "{what}: only a key-value store");
    let stores = rc["key_value_store"].as_table().unwrap();
    assert_eq!(
        stores.keys().collect::<Vec<_>>(),
        ["default"],
        "{what}: the component opens only the `default` store"
    );
    let store = stores["default"].as_table().unwrap();
    // spinframework/spin v4.0.2 crates/key-value-redis/src/lib.rs: type "redis", field `url`.
    let fields: BTreeSet<&str> = store.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        fields,
        BTreeSet::from(["type", "url"]),
        "{what}: the fields Spin's Redis store reads"
    );
    assert_eq!(store["type"].as_str(), Some("redis"), "{what}");
    let url = store["url"].as_str().unwrap();
    assert!(url.starts_with("redis://"), "{what}: url {url}");
    url.to_string()
}

#[test]
fn spin_fleet_runtime_config_puts_the_default_store_on_local_redis() {
    let rel = "deploy/spin/runtime-config-redis.toml";
    let url = check_redis_runtime_config(&toml_file(rel), rel);
    assert_eq!(url, "redis://127.0.0.1:6379");
}

/// Fields of each `[[config_provider]]` type, as Spin v4.0.2 deserialises them
/// (crates/runtime-config/src/variables.rs and crates/variables-{env,static,vault,azure}):
/// (required, optional).
fn provider_fields(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        "env" => (&[], &["prefix", "dotenv_path"]),
        "static" => (&["values"], &[]),
        "vault" => (&["url", "token", "mount"], &["prefix"]),
        "azure_key_vault" => (
            &["vault_url"],
            &["client_id", "client_secret", "tenant_id", "authority_host"],
        ),
        other => panic!("Spin has no variables provider of type {other:?}"),
    }
}

/// Checks a vault runtime configuration: providers env, static, then `vault_type`, each with
/// only fields Spin reads; the static values are every setting that is not a required secret
/// (under the manifest's variable names), with spin.toml's defaults. Returns the vault's table.
fn check_providers(rel: &str, vault_type: &str, name: impl Fn(&str) -> String) -> toml::Table {
    let rc = toml_file(rel);
    let top: Vec<_> = rc.as_table().unwrap().keys().collect();
    assert_eq!(top, ["config_provider"], "{rel}: only variable providers");
    let providers = rc["config_provider"].as_array().unwrap();
    let kinds: Vec<_> = providers
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["env", "static", vault_type],
        "{rel}: provider order"
    );
    for p in providers {
        let table = p.as_table().unwrap();
        let (required, optional) = provider_fields(p["type"].as_str().unwrap());
        for field in required {
            assert!(table.contains_key(*field), "{rel}: {field} missing");
        }
        for field in table.keys().filter(|k| *k != "type") {
            assert!(
                required.contains(&field.as_str()) || optional.contains(&field.as_str()),
                "{rel}: Spin refuses the field {field}"
            );
        }
    }
    let values = providers[1]["values"].as_table().unwrap();
    let expected: BTreeMap<String, String> = SETTINGS
        .iter()
        .filter(|s| !(is_secret(s) && is_required(s)))
        .map(|s| (name(s), default_of(s)))
        .collect();
    let actual: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        actual, expected,
        "{rel}: the static values are every setting but the required secrets, with spin.toml's defaults"
    );
    providers[2].as_table().unwrap().clone()
}

#[test]
fn vault_runtime_config_has_exactly_the_fields_spin_reads() {
    let rel = "deploy/vault/runtime-config.toml";
    let vault = check_providers(rel, "vault", str::to_string);
    assert_eq!(
        vault.keys().collect::<Vec<_>>(),
        ["mount", "prefix", "token", "type", "url"],
        "{rel}"
    );
    let url = vault["url"].as_str().unwrap();
    assert!(url.starts_with("https://"), "{rel}: url {url}");
    let text = read(rel);
    for secret in SECRET_SETTINGS.iter().filter(|s| is_required(s)) {
        assert!(
            text.contains(secret),
            "{rel}: names the secret {secret} to create"
        );
    }
}

#[test]
fn azure_key_vault_runtime_config_has_exactly_the_fields_spin_reads() {
    let rel = "deploy/azure-key-vault/runtime-config.toml";
    let azure = check_providers(rel, "azure_key_vault", key_vault_name);
    assert_eq!(
        azure.keys().collect::<Vec<_>>(),
        [
            "authority_host",
            "client_id",
            "client_secret",
            "tenant_id",
            "type",
            "vault_url"
        ],
        "{rel}"
    );
    // spinframework/spin v4.0.2 crates/variables-azure/src/lib.rs, enum AzureAuthorityHost.
    let host = azure["authority_host"].as_str().unwrap();
    assert!(
        [
            "AzurePublicCloud",
            "AzureChina",
            "AzureGermany",
            "AzureGovernment"
        ]
        .contains(&host),
        "{rel}: authority_host {host}"
    );
    let text = read(rel);
    for secret in SECRET_SETTINGS.iter().filter(|s| is_required(s)) {
        let name = key_vault_name(secret);
        assert!(
            text.contains(&name),
            "{rel}: names the secret {name} to create"
        );
    }
}

// ---- SpinKube ----------------------------------------------------------------------------------

const SPINAPP: &str = "deploy/spinkube/spinapp.yaml";
const SECRET_EXAMPLE: &str = "deploy/spinkube/secret.example.yaml";
const RUNTIME_CONFIG_SECRET: &str = "deploy/spinkube/runtime-config-secret.example.yaml";

/// A `v1` `Secret` with string data: its name and its keys and values.
fn secret_data(rel: &str) -> (String, BTreeMap<String, String>) {
    let s = yaml_file(rel);
    assert_eq!(s["apiVersion"], "v1", "{rel}");
    assert_eq!(s["kind"], "Secret", "{rel}");
    let obj = s.as_object().unwrap();
    for key in obj.keys() {
        assert!(
            ["apiVersion", "kind", "metadata", "type", "stringData"].contains(&key.as_str()),
            "{rel}: unexpected {key}"
        );
    }
    let data = s["stringData"]
        .as_object()
        .unwrap_or_else(|| panic!("{rel}: stringData"))
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("{rel}: {k} is not a string"));
            (k.clone(), v.to_string())
        })
        .collect();
    (s["metadata"]["name"].as_str().unwrap().to_string(), data)
}

#[test]
fn spinapp_binds_every_setting_secrets_from_the_secret() {
    let app = yaml_file(SPINAPP);
    let (secret_name, secret_keys) = secret_data(SECRET_EXAMPLE);
    let (rc_secret_name, _) = secret_data(RUNTIME_CONFIG_SECRET);
    assert_eq!(app["apiVersion"], "core.spinkube.dev/v1alpha1");
    assert_eq!(app["kind"], "SpinApp");
    let spec = &app["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["executor"], "containerd-shim-spin");
    assert!(spec["image"].as_str().is_some_and(|i| !i.is_empty()));
    assert_eq!(
        spec["runtimeConfig"]["loadFromSecret"].as_str(),
        Some(rc_secret_name.as_str()),
        "the runtime configuration comes from the example's Secret"
    );
    // Readiness asks the store too (an instance whose store does not answer leaves the
    // Service); liveness does not (a restart does not bring a shared Redis back).
    for (probe, path) in [("liveness", "/health?store=skip"), ("readiness", "/health")] {
        assert_eq!(
            spec["checks"][probe]["httpGet"]["path"], path,
            "{probe} probe"
        );
    }

    let vars = spec["variables"].as_array().unwrap();
    let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(
        names, SETTINGS,
        "the SpinApp's variables are SETTINGS, in order"
    );
    for var in vars {
        let name = var["name"].as_str().unwrap();
        let fields: BTreeSet<&str> = var
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        if is_secret(name) {
            assert_eq!(fields, BTreeSet::from(["name", "valueFrom"]), "{name}");
            let r = &var["valueFrom"]["secretKeyRef"];
            assert_eq!(var["valueFrom"].as_object().unwrap().len(), 1, "{name}");
            assert_eq!(r["name"], secret_name.as_str(), "{name}: the Secret");
            assert_eq!(r["key"], name, "{name}: its key");
            assert!(
                secret_keys.contains_key(name),
                "{name}: not in {SECRET_EXAMPLE}"
            );
            // A required secret must exist; an optional one may be left out of the Secret.
            assert_eq!(
                r["optional"].as_bool().unwrap_or(false),
                !is_required(name),
                "{name}: optional"
            );
        } else {
            assert_eq!(fields, BTreeSet::from(["name", "value"]), "{name}");
            assert_eq!(
                var["value"].as_str(),
                Some(default_of(name).as_str()),
                "{name}: spin.toml's default"
            );
        }
    }
}

#[test]
fn secret_example_has_a_key_for_every_secret_setting() {
    let (_, data) = secret_data(SECRET_EXAMPLE);
    let keys: BTreeSet<&str> = data.keys().map(|k| k.as_str()).collect();
    let secrets: BTreeSet<&str> = SECRET_SETTINGS.iter().copied().collect();
    assert_eq!(keys, secrets);
    for (key, value) in &data {
        if is_required(key) {
            assert!(!value.is_empty(), "{key}: a placeholder to replace");
        } else {
            assert_eq!(value, "", "{key}: optional, empty means unset");
        }
    }
}

#[test]
fn runtime_config_secret_puts_the_default_store_on_redis() {
    let (_, data) = secret_data(RUNTIME_CONFIG_SECRET);
    // spin-operator v0.6.1 mounts this one key as /runtime-config.toml.
    assert_eq!(data.keys().collect::<Vec<_>>(), ["runtime-config.toml"]);
    let rc: Value = toml::from_str(&data["runtime-config.toml"]).unwrap();
    check_redis_runtime_config(&rc, RUNTIME_CONFIG_SECRET);
}

// ---- a validator for the subset of OpenAPI v3 the SpinApp CRD uses ----------------------------

const SCHEMA_KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "enum",
    "items",
    "additionalProperties",
    "minItems",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
];

/// Every way `doc` breaks `schema`, as `path: reason`. Unknown fields are errors (kubectl's
/// strict field validation), except under `x-kubernetes-preserve-unknown-fields`.
fn validate(schema: &Json, doc: &Json, path: &str, errors: &mut Vec<String>) {
    let s = schema.as_object().expect("a schema is an object");
    for key in s.keys() {
        assert!(
            SCHEMA_KEYWORDS.contains(&key.as_str()),
            "the validator does not implement {key:?} ({path})"
        );
    }
    if s.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        if !(doc.is_i64() || doc.is_u64() || doc.is_string()) {
            errors.push(format!("{path}: not an integer or a string"));
        }
        return;
    }
    if let Some(ty) = s.get("type").and_then(Json::as_str) {
        let ok = match ty {
            "object" => doc.is_object(),
            "array" => doc.is_array(),
            "string" => doc.is_string(),
            "integer" => doc.is_i64() || doc.is_u64(),
            "number" => doc.is_number(),
            "boolean" => doc.is_boolean(),
            other => panic!("unknown type {other}"),
        };
        if !ok {
            errors.push(format!("{path}: not of type {ty}"));
            return;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Json::as_array)
        && !allowed.contains(doc)
    {
        errors.push(format!("{path}: {doc} is not one of {allowed:?}"));
    }
    if let Some(obj) = doc.as_object() {
        for req in s
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(req.as_str().unwrap()) {
                errors.push(format!("{path}: required field {req} missing"));
            }
        }
        let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        for (key, value) in obj {
            let sub = format!("{path}.{key}");
            if let Some(prop) = s.get("properties").and_then(|p| p.get(key)) {
                validate(prop, value, &sub, errors);
            } else if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
                validate(extra, value, &sub, errors);
            } else if !preserve {
                errors.push(format!("{sub}: unknown field"));
            }
        }
    }
    if let Some(items) = doc.as_array() {
        if let Some(min) = s.get("minItems").and_then(Json::as_u64)
            && (items.len() as u64) < min
        {
            errors.push(format!("{path}: fewer than {min} items"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(item_schema, item, &format!("{path}[{i}]"), errors);
            }
        }
    }
}

/// The SpinApp schema: tests/host/tests/fixtures/spinapp-schema.yaml (derived from
/// spinframework/spin-operator's CRD at v0.6.1; see its header).
fn spinapp_schema() -> Json {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spinapp-schema.yaml"),
    )
    .unwrap();
    yaml_str(&text, "spinapp-schema.yaml")
}

fn spinapp_errors(doc: &Json) -> Vec<String> {
    let mut errors = Vec::new();
    validate(&spinapp_schema(), doc, "", &mut errors);
    errors
}

#[test]
fn spinapp_matches_the_crd_schema() {
    let errors = spinapp_errors(&yaml_file(SPINAPP));
    assert!(errors.is_empty(), "{SPINAPP}:\n{}", errors.join("\n"));
}

#[test]
fn the_schema_check_refuses_broken_spinapps() {
    let good = yaml_file(SPINAPP);
    type Break = Box<dyn Fn(&mut Json)>;
    let cases: Vec<(&str, Break)> = vec![
        (
            ".spec: required field \"executor\" missing",
            Box::new(|d| {
                d["spec"].as_object_mut().unwrap().remove("executor");
            }),
        ),
        (
            ".spec.replicas: not of type integer",
            Box::new(|d| d["spec"]["replicas"] = json!("3")),
        ),
        (
            ".spec.runtimeconfig: unknown field",
            Box::new(|d| {
                let rc = d["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("runtimeConfig")
                    .unwrap();
                d["spec"]["runtimeconfig"] = rc;
            }),
        ),
        (
            ".spec.checks.liveness.httpGet: required field \"path\" missing",
            Box::new(|d| {
                d["spec"]["checks"]["liveness"]["httpGet"]
                    .as_object_mut()
                    .unwrap()
                    .remove("path");
            }),
        ),
        (
            ".spec.checks.readiness.httpGet.port: unknown field",
            Box::new(|d| d["spec"]["checks"]["readiness"]["httpGet"]["port"] = json!(80)),
        ),
        (
            ".spec.variables[0].valueFrom.secretKeyRef: required field \"key\" missing",
            Box::new(|d| {
                d["spec"]["variables"][0]["valueFrom"]["secretKeyRef"]
                    .as_object_mut()
                    .unwrap()
                    .remove("key");
            }),
        ),
        (
            ".spec.variables[6].value: not of type string",
            Box::new(|d| d["spec"]["variables"][6]["value"] = json!(true)),
        ),
        (
            ".kind: \"SpinApps\" is not one of",
            Box::new(|d| d["kind"] = json!("SpinApps")),
        ),
        (
            ".spec.resources.limits.cpu: not an integer or a string",
            Box::new(|d| d["spec"]["resources"] = json!({"limits": {"cpu": true}})),
        ),
        (
            ".spec.components: fewer than 1 items",
            Box::new(|d| d["spec"]["components"] = json!([])),
        ),
    ];
    for (expected, break_it) in cases {
        let mut doc = good.clone();
        break_it(&mut doc);
        let errors = spinapp_errors(&doc);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "expected an error starting {expected:?}, got {errors:?}"
        );
    }
}

// ---- wasmtime serve ----------------------------------------------------------------------------

/// `NAME=value` lines (comments skipped), in order.
fn env_file(rel: &str) -> Vec<(String, String)> {
    read(rel)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{rel}: {l:?} is not NAME=value"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

const ENV_EXAMPLE: &str = "deploy/wasmtime/env.example";

#[test]
fn env_example_has_every_setting_upper_cased() {
    let env = env_file(ENV_EXAMPLE);
    let names: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
    let expected: Vec<String> = SETTINGS.iter().map(|s| s.to_ascii_uppercase()).collect();
    assert_eq!(
        names, expected,
        "{ENV_EXAMPLE}: SETTINGS upper-cased, in order"
    );
    for (name, value) in &env {
        let setting = name.to_ascii_lowercase();
        assert!(
            !value.contains(char::is_whitespace) && !value.contains(['"', '\'', '$', '`']),
            "{name}: a value a shell sources as written"
        );
        if !is_secret(&setting) {
            assert_eq!(*value, default_of(&setting), "{name}: spin.toml's default");
        } else if is_required(&setting) {
            assert!(value.starts_with("REPLACE_"), "{name}: a placeholder");
        } else {
            assert_eq!(value, "", "{name}: optional secret, unset");
        }
    }
}

/// The README's `wasmtime serve` block and its command line, checked: every setting passed
/// by name only (`--env NAME`, the value from the environment), the portable build.
fn readme_wasmtime_block() -> String {
    let block = deploying_block("wasmtime serve");
    let cmds = commands(&block);
    let serve: Vec<_> = cmds
        .iter()
        .filter(|c| c.first().map(String::as_str) == Some("wasmtime"))
        .collect();
    assert_eq!(serve.len(), 1, "one wasmtime command:\n{block}");
    let args = &serve[0][1..];
    assert_eq!(args[0], "serve");
    assert_eq!(
        args.last().map(String::as_str),
        Some("target/wasm/bridge-wasi.wasm")
    );
    let mut envs = Vec::new();
    let mut rest = args[1..args.len() - 1].iter();
    let mut flags = Vec::new();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--env" => envs.push(rest.next().expect("--env NAME").clone()),
            "--addr" => flags.push(format!("--addr {}", rest.next().unwrap())),
            other => flags.push(other.to_string()),
        }
    }
    assert_eq!(
        flags,
        ["-Scli", "--addr 0.0.0.0:8080"],
        "wasmtime serve flags"
    );
    for name in &envs {
        assert!(
            !name.contains('='),
            "--env {name}: a value on the command line"
        );
    }
    let expected: Vec<String> = SETTINGS.iter().map(|s| s.to_ascii_uppercase()).collect();
    assert_eq!(envs, expected, "--env for every setting, in SETTINGS order");
    assert!(
        block.contains(r#"set -a; . "$BRIDGE_ENV"; set +a"#),
        "the block loads the settings from $BRIDGE_ENV:\n{block}"
    );
    block
}

#[test]
fn readme_wasmtime_serve_command_passes_every_setting_by_name() {
    readme_wasmtime_block();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A shell child in its own process group, killed with its children on drop.
struct Group {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Group {
    fn spawn(mut cmd: Command) -> Group {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Group { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until `addr` accepts connections; panics with the output if the group's
    /// leader exits or `limit` passes.
    fn wait_listening(&mut self, addr: SocketAddr, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "exited with {status} before listening on {addr}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on {addr} after {limit:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // `--` so that the negative process-group id is not read as an option.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange over a fresh connection: status and body (chunked bodies decoded).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}

fn assert_no_secret(text: &str) {
    for secret in common::SECRETS {
        assert!(!text.contains(secret), "a configured secret leaked");
    }
}

/// The README's `wasmtime serve` block, run by bash as written, on the portable build, with
/// `$BRIDGE_ENV` a copy of env.example filled in for the simulator; the one change is the
/// listening address (`--addr 0.0.0.0:8080` becomes a free loopback port). An alert places
/// one order.
#[test]
fn readme_wasmtime_serve_block_places_an_order() {
    let block = readme_wasmtime_block();
    let Some(cli) = find_wasmtime_cli() else {
        eprintln!(
            "skipped: no wasmtime CLI ($WASMTIME, PATH, cargo bin); \
             install with: cargo install wasmtime-cli --version 48.0.8 --locked"
        );
        return;
    };
    wasm_path(Flavour::Wasi);
    let sim = common::sim();

    // $BRIDGE_ENV: env.example with the secrets and the Kraken origin filled in.
    let dir = tempfile::tempdir().unwrap();
    let env_path = dir.path().join("bridge.env");
    let fill: BTreeMap<String, String> = common::serve_env(&sim, &[]).into_iter().collect();
    let mut text = String::new();
    for (name, value) in env_file(ENV_EXAMPLE) {
        let value = fill.get(&name).cloned().unwrap_or(value);
        text.push_str(&format!("{name}='{value}'\n"));
    }
    std::fs::write(&env_path, text).unwrap();

    let port = free_port();
    assert_eq!(block.matches("--addr 0.0.0.0:8080").count(), 1);
    let script = block.replace("--addr 0.0.0.0:8080", &format!("--addr 127.0.0.1:{port}"));
    let path = std::env::join_paths(std::iter::once(cli.parent().unwrap().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(root())
        .env("PATH", path)
        .env("BRIDGE_ENV", &env_path);
    let mut server = Group::spawn(cmd);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    server.wait_listening(addr, Duration::from_secs(60));

    let (status, body) = http(addr, "GET", "/health", "");
    assert_eq!(status, 200, "{body}\n{}", server.output());
    assert_eq!(serde_json::from_str::<Json>(&body).unwrap()["status"], "ok");

    let (status, body) = http(
        addr,
        "POST",
        "/webhook",
        &common::limit_alert(common::WEBHOOK_SECRET),
    );
    assert_no_secret(&body);
    assert_no_secret(&server.output());
    assert_eq!(status, 200, "{body}\n{}", server.output());
    let answer: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "placed", "{answer}");
    let orders = sim.orders();
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!(answer["txid"][0], orders[0].txid.as_str());
}

// ---- spin up: two instances on one Redis ------------------------------------------------------

/// The README's fleet commands: at least two `spin up` of spin.toml, each on its own port,
/// each with the Redis runtime configuration.
fn readme_spin_fleet() -> Vec<Vec<String>> {
    let rc = "deploy/spin/runtime-config-redis.toml";
    let block = deploying_block(&format!("--runtime-config-file {rc}"));
    let ups: Vec<Vec<String>> = commands(&block)
        .into_iter()
        .filter(|c| c.starts_with(&["spin".into(), "up".into()]))
        .map(|mut c| {
            if c.last().map(String::as_str) == Some("&") {
                c.pop();
            }
            c
        })
        .collect();
    assert!(ups.len() >= 2, "two spin up instances:\n{block}");
    let mut ports = BTreeSet::new();
    for up in &ups {
        let flag = |name: &str| {
            let i = up
                .iter()
                .position(|a| a == name)
                .unwrap_or_else(|| panic!("{name} missing in {up:?}"));
            up[i + 1].clone()
        };
        assert_eq!(flag("-f"), "spin.toml", "{up:?}");
        assert_eq!(flag("--runtime-config-file"), rc, "{up:?}");
        let listen: SocketAddr = flag("--listen").parse().unwrap();
        assert!(ports.insert(listen.port()), "two instances on one port");
    }
    let section = readme_section("Deploying").to_ascii_lowercase();
    assert!(
        section.contains("load balancer") || section.contains("proxy"),
        "the README says what goes in front of the instances"
    );
    ups
}

#[test]
fn readme_spin_fleet_commands_share_one_redis_store() {
    readme_spin_fleet();
}

/// The README's two `spin up` instances on one Redis (spin.local.toml instead of spin.toml,
/// so that they trade on the simulator; free ports; the test's Redis): an alert placed
/// through the first is a duplicate through the second, and deliveries straddling a claim
/// slot's edge on both instances trade once.
#[test]
fn readme_spin_fleet_recognises_a_resend_to_the_other_instance() {
    let ups = readme_spin_fleet();
    let Some(spin) =
        bridge_host::spin_or_skip("readme_spin_fleet_recognises_a_resend_to_the_other_instance")
    else {
        return;
    };
    if !RedisServer::available() {
        eprintln!("skipped: redis-server is not installed");
        return;
    }
    wasm_path(Flavour::Spin);
    // spin.local.toml allows outbound HTTP only to the simulator on 127.0.0.1:18081.
    let mut account = kraken_sim::Account::test_default();
    account.api_key = common::API_KEY.to_string();
    // And a pool of three further keys (kraken_api_keys).
    for (key, secret) in common::POOL_KEYS {
        account = account.with_key(key, secret);
    }
    // And account `swing`'s own Kraken account (kraken_accounts).
    let mut swing = kraken_sim::Account::test_default();
    swing.api_key = common::SWING_API_KEY.to_string();
    swing.api_secret = common::SWING_API_SECRET.to_string();
    let sim = match kraken_sim::Sim::try_start(kraken_sim::SimOptions {
        listen: ([127, 0, 0, 1], 18081).into(),
        accounts: vec![account, swing],
        ..kraken_sim::SimOptions::default()
    }) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("skipped: the simulator cannot listen on 127.0.0.1:18081 ({e})");
            return;
        }
    };
    let redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("runtime-config.toml");
    let text = read("deploy/spin/runtime-config-redis.toml")
        .replace("redis://127.0.0.1:6379", &redis.url());
    std::fs::write(&rc, text).unwrap();

    let mut instances = Vec::new();
    for up in ups.iter().take(2) {
        let port = free_port();
        let mut args: Vec<String> = up[1..].to_vec();
        for (flag, value) in [
            ("-f", "spin.local.toml".to_string()),
            ("--listen", format!("127.0.0.1:{port}")),
            ("--runtime-config-file", rc.to_string_lossy().into_owned()),
        ] {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1] = value;
        }
        let mut cmd = Command::new(&spin);
        cmd.args(&args).current_dir(root());
        for (name, value) in common::settings(&sim) {
            cmd.env(
                format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
                value,
            );
        }
        cmd.env("SPIN_VARIABLE_KRAKEN_API_KEYS", common::pool_setting(3));
        cmd.env("SPIN_VARIABLE_KRAKEN_ACCOUNTS", common::accounts_setting());
        let mut group = Group::spawn(cmd);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        group.wait_listening(addr, Duration::from_secs(60));
        instances.push((group, addr));
    }
    for (_, addr) in &instances {
        let (status, body) = http(*addr, "GET", "/health", "");
        assert_eq!(status, 200, "{body}");
        let health: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(
            health["kraken_keys"], 4,
            "the pool, read from Spin: {health}"
        );
        assert_eq!(
            health["accounts"].as_array().map(Vec::len),
            Some(3),
            "the accounts, read from Spin: {health}"
        );
    }

    // A market order with an `id`: Kraken's own refusal of a second open `cl_ord_id` cannot
    // stand in for the shared store, as it could for a resting limit order.
    let alert = common::market_alert("readme-fleet-1", "0.001");
    let (status, body) = http(instances[0].1, "POST", "/webhook", &alert);
    assert_eq!(status, 200, "{body}\n{}", instances[0].0.output());
    let first: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(first["status"], "placed", "{first}");
    // The first instance writes the outcome right after its answer: a resend in between is
    // told the alert is in flight, one after it gets the first outcome's txid.
    let mut second = Json::Null;
    for _ in 0..20 {
        let (status, body) = http(instances[1].1, "POST", "/webhook", &alert);
        assert_eq!(status, 200, "{body}\n{}", instances[1].0.output());
        second = serde_json::from_str(&body).unwrap();
        assert_eq!(second["status"], "duplicate", "{second}");
        if !second["txid"].is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(second["txid"], first["txid"], "{second}");
    assert_eq!(sim.orders().len(), 1);
    let add_orders = common::private_requests(&sim)
        .iter()
        .filter(|r| r.method.as_deref() == Some("AddOrder"))
        .count();
    assert_eq!(
        add_orders, 1,
        "the second instance found the first's record in Redis"
    );

    // Deliveries 2 and 1 ms before a claim slot's edge, at it and 1 ms after, alternating
    // between the two instances (on Spin a store call takes a few ms, so the sides overlap): each
    // side increments both slots' counters, and exactly one delivery must still own the
    // alert (in arrival order, both sides could lose, and nothing traded). A `503` is resent
    // as TradingView resends it: 5 s later, at most three times.
    for r in 0..3 {
        let id = format!("readme-edge-{r}");
        let alert = common::market_alert(&id, "0.001");
        let edge = common::next_claim_slot_edge_ms();
        let threads: Vec<_> = [-2i64, -1, 0, 1]
            .into_iter()
            .enumerate()
            .map(|(i, offset)| {
                let addrs: Vec<SocketAddr> = instances.iter().map(|(_, a)| *a).collect();
                let alert = alert.clone();
                let at = edge.saturating_add_signed(offset);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(at.saturating_sub(common::now_ms())));
                    let mut answers = Vec::new();
                    loop {
                        let addr = addrs[(i + answers.len()) % addrs.len()];
                        let (status, body) = http(addr, "POST", "/webhook", &alert);
                        answers.push((status, body));
                        if status != 503 || answers.len() == 4 {
                            return answers;
                        }
                        std::thread::sleep(Duration::from_secs(5));
                    }
                })
            })
            .collect();
        let answers: Vec<(u16, String)> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let cl = common::cl_ord_id_for_id(&id);
        let orders = sim
            .orders()
            .into_iter()
            .filter(|o| o.cl_ord_id.as_deref() == Some(cl.as_str()))
            .count();
        assert_eq!(
            orders, 1,
            "edge {r}: {orders} orders; the answers: {answers:#?}"
        );
        let placed = answers
            .iter()
            .filter(|(status, body)| *status == 200 && body.contains("\"status\":\"placed\""))
            .count();
        assert_eq!(placed, 1, "edge {r}: {answers:#?}");
        for (status, body) in &answers {
            assert!(
                *status == 503
                    || body.contains("\"status\":\"duplicate\"")
                    || body.contains("\"status\":\"placed\""),
                "edge {r}: {status} {body}"
            );
        }
    }

    // Accounts: one `id` to account swing and to the default account, each through one
    // instance and resent through the other: one order on each Kraken account, each under its
    // account's own cl_ord_id. An unknown account is answered as a wrong secret.
    let swing_alert = common::market_alert_with(common::SWING_SECRET, "readme-acct-1", "0.001");
    let default_alert = common::market_alert("readme-acct-1", "0.001");
    for (path, alert, first) in [
        ("/webhook/swing", &swing_alert, 0),
        ("/webhook", &default_alert, 1),
    ] {
        let (status, body) = http(instances[first].1, "POST", path, alert);
        assert_eq!(
            status,
            200,
            "{path}: {body}\n{}",
            instances[first].0.output()
        );
        assert!(body.contains("\"status\":\"placed\""), "{path}: {body}");
        let (status, body) = http(instances[1 - first].1, "POST", path, alert);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("\"status\":\"duplicate\""), "{path}: {body}");
    }
    for (cl, key) in [
        (
            common::cl_ord_id_in("swing", "readme-acct-1"),
            common::SWING_API_KEY,
        ),
        (common::cl_ord_id_for_id("readme-acct-1"), common::API_KEY),
    ] {
        let orders: Vec<_> = sim
            .orders()
            .into_iter()
            .filter(|o| o.cl_ord_id.as_deref() == Some(cl.as_str()))
            .collect();
        assert_eq!(orders.len(), 1, "one order under {cl}");
        assert_eq!(orders[0].api_key, key, "on its account's Kraken account");
    }
    let wrong = common::market_alert_with("not-a-secret-of-any-account-012345", "w", "0.001");
    let (status, wrong_body) = http(instances[0].1, "POST", "/webhook", &wrong);
    assert_eq!(status, 401);
    for path in ["/webhook/nosuch", "/webhook/scalp"] {
        let (status, body) = http(instances[1].1, "POST", path, &swing_alert);
        assert_eq!((status, &body), (401, &wrong_body), "{path}");
    }

    // Every order went out on a key of the pool, all of them one account's, or on swing's.
    for r in common::private_requests(&sim) {
        let key = r.api_key.clone().unwrap_or_default();
        assert!(
            key == common::API_KEY
                || key == common::SWING_API_KEY
                || common::POOL_KEYS.iter().any(|(k, _)| *k == key),
            "an unknown key"
        );
        assert_eq!(r.signature_valid, Some(true));
    }
    for (group, _) in &instances {
        assert_no_secret(&group.output());
    }
}

// ---- the declared defaults of every deploy path form a usable configuration -------------------

#[test]
fn the_listed_defaults_with_the_secrets_filled_in_are_usable() {
    let env: BTreeMap<String, String> = env_file(ENV_EXAMPLE).into_iter().collect();
    let config = Config::from_lookup(|name| match name {
        "webhook_secret" => Some(common::WEBHOOK_SECRET.into()),
        "kraken_api_key" => Some(common::API_KEY.into()),
        "kraken_api_secret" => Some(common::API_SECRET.into()),
        _ => env.get(&name.to_ascii_uppercase()).cloned(),
    });
    assert!(config.is_usable(), "{:?}", config.problems);
    assert!(config.trading_enabled);
    assert!(!config.dry_run);
}
