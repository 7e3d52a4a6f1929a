//! `scripts/up`, then the curl it prints, places an order on the simulator.

use bridge_host::workspace_root;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{KillGroup, free_addr};

#[test]
fn up_then_the_printed_curl_places_an_order() {
    let root = workspace_root();
    assert!(
        root.join("target/debug/kraken-sim").exists(),
        "kraken-sim binary not built"
    );
    let (bridge, sim) = (free_addr(), free_addr());
    let mut child = Command::new("setsid")
        .arg(root.join("scripts/up"))
        .current_dir(&root)
        .env("BRIDGE_ADDR", &bridge)
        .env("SIM_ADDR", &sim)
        // The suite has built everything; building again would wait on cargo's lock.
        .env("SKIP_BUILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("scripts/up starts");
    let stdout = child.stdout.take().unwrap();
    let _guard = KillGroup(child);

    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut curl = None;
    let mut printed = String::new();
    while let Some(Ok(line)) = lines.next() {
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("curl -sS -X POST") {
            curl = Some(line);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scripts/up printed no curl:\n{printed}"
        );
    }
    let curl = curl.unwrap_or_else(|| panic!("scripts/up printed no curl:\n{printed}"));
    assert!(printed.contains("Example alert"), "{printed}");

    let out = Command::new("bash").arg("-c").arg(&curl).output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(answer["status"], "placed", "{answer}");

    let out = Command::new("curl")
        .args(["-sS", &format!("http://{sim}/_sim/orders")])
        .output()
        .unwrap();
    let orders: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let orders = orders.as_array().expect("a list of orders");
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["txid"], answer["txid"][0]);
}
