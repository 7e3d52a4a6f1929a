//! Kraken's spot REST API as plain data: signing, request building and reply reading.

pub mod pairs;
pub mod reply;
pub mod request;
pub mod sign;
