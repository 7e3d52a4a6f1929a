//! The incoming rate limit (contract 2.3): at most `rate_limit_per_minute` accepted alerts
//! per clock minute and account, counted in the state store under `rl:<minute>` for the
//! default account and `rl:<minute>@<account>` for a named one (contract 2.7).

/// The prefix of rate-limit keys.
pub const PREFIX: &str = "rl:";

/// The store key counting the alerts of `account` (`None`: the default account) in the
/// minute that contains `now_secs`.
pub fn key(now_secs: u64, account: Option<&str>) -> String {
    match account {
        None => format!("{PREFIX}{}", now_secs / 60),
        Some(account) => format!("{PREFIX}{}@{account}", now_secs / 60),
    }
}

/// The count stored under a key (absent or unreadable: zero).
pub fn count(value: Option<&[u8]>) -> u32 {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Seconds until the next minute starts, for `retry-after`.
pub fn retry_after(now_secs: u64) -> u32 {
    (60 - now_secs % 60) as u32
}

/// Whether a rate-limit key is older than the previous minute.
pub fn is_expired(key: &str, now_secs: u64) -> bool {
    key.strip_prefix(PREFIX)
        .map(|m| m.split_once('@').map_or(m, |(minute, _)| minute))
        .and_then(|m| m.parse::<u64>().ok())
        .is_some_and(|minute| minute + 1 < now_secs / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_counts() {
        assert_eq!(key(120, None), "rl:2");
        assert_eq!(key(179, None), "rl:2");
        assert_eq!(key(179, Some("swing")), "rl:2@swing");
        assert_eq!(count(Some(b"41")), 41);
        assert_eq!(count(None), 0);
        assert_eq!(count(Some(b"garbage")), 0);
        assert_eq!(retry_after(120), 60);
        assert_eq!(retry_after(179), 1);
    }

    #[test]
    fn expiry() {
        assert!(!is_expired("rl:2", 179));
        assert!(!is_expired("rl:2", 239));
        assert!(is_expired("rl:2", 240));
        assert!(!is_expired("rl:2@swing", 239));
        assert!(is_expired("rl:2@swing", 240));
        assert!(!is_expired("dd:60:1:x", 100_000));
    }
}
