//! Helpers for the integration tests: see `harness`.
