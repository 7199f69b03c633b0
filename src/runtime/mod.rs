//! The production driver on tokio and TCP.
