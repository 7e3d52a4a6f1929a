//! The Kraken keys Kraken refused, as `/health` reports them (contract 2.7: a refused key
//! is reported in the audit and on `/health`).
//!
//! An alert whose key Kraken refuses (`EAPI:Invalid key`, `EAPI:Invalid signature`,
//! `EGeneral:Permission denied`) goes on with the next key of its account's pool and names
//! the refused key in its audit line. After its answer it also records the refusal under one
//! store key, [`KEY`]: which account, which key (numbered from 1 as in the audit's
//! `signers_refused`), and when. `/health` reads that key with its store probe (the one read
//! it makes anyway), so a revoked key shows on every instance of the fleet for
//! [`KEEP_SECS`] after its last refusal. The portable build has no store: there the audit
//! line is the only report.

use serde::{Deserialize, Serialize};

/// The store key of the record.
pub const KEY: &str = "kr:refused";

/// How long a refusal is reported after it was last seen.
pub const KEEP_SECS: u64 = 86_400;

/// The most refusals kept (16 keys for each of several accounts; the oldest go first).
pub const MAX_ENTRIES: usize = 256;

/// One refused key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The named account, `None` for the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The key, numbered from 1 (`kraken_api_key`, then `kraken_api_keys` in order).
    pub key: usize,
    /// When Kraken last refused it, Unix seconds.
    pub at: u64,
}

/// The entries a stored value holds (absent or unreadable: none).
pub fn decode(value: Option<&[u8]>) -> Vec<Entry> {
    value
        .and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or_default()
}

/// The record after `keys` of `account` were refused at `now_secs`: the stored entries
/// (`current`) less those older than [`KEEP_SECS`], with these added or brought up to date.
pub fn merge(
    current: Option<&[u8]>,
    account: Option<&str>,
    keys: &[usize],
    now_secs: u64,
) -> Vec<u8> {
    let mut entries = fresh(decode(current), now_secs);
    for &key in keys {
        entries.retain(|e| !(e.account.as_deref() == account && e.key == key));
        entries.push(Entry {
            account: account.map(str::to_string),
            key,
            at: now_secs,
        });
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.at));
    entries.truncate(MAX_ENTRIES);
    serde_json::to_vec(&entries).expect("entries serialise")
}

/// The entries refused within [`KEEP_SECS`] of `now_secs`.
pub fn fresh(entries: Vec<Entry>, now_secs: u64) -> Vec<Entry> {
    entries
        .into_iter()
        .filter(|e| e.at + KEEP_SECS > now_secs)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_account_and_key_and_forgets_after_a_day() {
        let v = merge(None, None, &[2], 1_000);
        let v = merge(Some(&v), Some("swing"), &[1, 3], 2_000);
        let v = merge(Some(&v), None, &[2], 3_000);
        let entries = decode(Some(&v));
        assert_eq!(
            entries,
            [
                Entry {
                    account: None,
                    key: 2,
                    at: 3_000
                },
                Entry {
                    account: Some("swing".into()),
                    key: 1,
                    at: 2_000
                },
                Entry {
                    account: Some("swing".into()),
                    key: 3,
                    at: 2_000
                },
            ]
        );
        // A day after its last refusal a key is no longer reported.
        assert_eq!(fresh(entries.clone(), 2_000 + KEEP_SECS).len(), 1);
        assert!(fresh(entries, 3_000 + KEEP_SECS).is_empty());
        // Whatever the store holds that is not a record reads as none.
        assert!(decode(Some(b"garbage")).is_empty());
        assert!(decode(None).is_empty());
        let v = merge(Some(b"garbage"), None, &[1], 5);
        assert_eq!(decode(Some(&v)).len(), 1);
    }

    #[test]
    fn keeps_at_most_the_newest_entries() {
        let mut v = Vec::new();
        for i in 0..(MAX_ENTRIES + 10) {
            v = merge(Some(&v), Some(&format!("a{i}")), &[1], 100 + i as u64);
        }
        let entries = decode(Some(&v));
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert_eq!(
            entries[0].account.as_deref(),
            Some(format!("a{}", MAX_ENTRIES + 9).as_str())
        );
    }
}
