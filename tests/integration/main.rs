//! The integration tests, one module per concern, built as one test binary: the dependencies
//! (wiremock, tokio, hyper) are compiled into it and linked once, not once per file. All modules
//! share one process, so no test changes process-wide state (environment variables, the current
//! directory, a global subscriber): what a child process needs is set on its `Command`.
//!
//! `cargo test --test integration MODULE::` runs one module, e.g. `cargo test --test integration
//! stream::`. proptest keeps the failing cases it has found in
//! `tests/proptest-regressions/MODULE.txt` (its default for a crate root of `main.rs`) and runs
//! them first.

mod support;

mod binary;
mod direct;
mod hostile_envelopes;
mod isolation;
mod log_queries;
mod metrics;
mod multipart;
mod properties;
mod queued;
mod stream;
mod tls;
mod upstream;
