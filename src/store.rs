//! The state store as data: the operations the core asks the adapter to perform on the
//! host's key-value store (Spin's `default` store) and what comes back.
//!
//! The store has no compare-and-swap, no expiry and no counter (Spin key-value 2.0), so the
//! core treats it as a best-effort record: exactly-once rests on Kraken's `cl_ord_id` and the
//! look-ups of [`crate::bridge`], never on the store alone.

/// One operation on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Read a key.
    Get(String),
    /// Write a key.
    Set(String, Vec<u8>),
    /// Delete a key.
    Delete(String),
    /// List every key.
    Keys,
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    /// The value of a `Get` (`None`: no such key).
    Value(Option<Vec<u8>>),
    /// A `Set` or `Delete` succeeded.
    Done,
    /// The answer to `Keys`.
    Keys(Vec<String>),
    /// The store failed; the text is for the audit log.
    Failed(String),
}
