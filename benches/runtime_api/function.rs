//! The function under test: the release binary, built and started the way Lambda starts it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BINARY_NAME: &str = "memfault-chunk-proxy";

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` next to Cargo.toml).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The binary under test, and where it came from.
pub(crate) struct Binary {
    pub path: PathBuf,
    pub origin: &'static str,
}

/// The binary to measure: `BENCH_FUNCTION_BIN` when set, otherwise the output of
/// `cargo build --release` in a target directory of its own.
///
/// `target/release/memfault-chunk-proxy` itself cannot be used: `cargo bench` builds the bin
/// target too (benches may run it), with the features the dev-dependencies switch on, and links
/// that build over `target/release/memfault-chunk-proxy` before the bench starts. That binary is
/// not the one that ships. A plain `cargo build --release` in a separate target directory is;
/// after the first run it is up to date and this takes well under a second.
pub(crate) fn release_binary() -> Binary {
    if let Some(path) = std::env::var_os("BENCH_FUNCTION_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BENCH_FUNCTION_BIN={} does not exist; build it with `cargo build --release`",
            path.display()
        );
        return Binary {
            path,
            origin: "from BENCH_FUNCTION_BIN",
        };
    }
    let target_dir = target_dir().join("bench-release");
    eprintln!(
        "building the function with `cargo build --release --locked` into {} (the first run compiles everything)",
        target_dir.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--bin", BINARY_NAME])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null());
    // Cargo describes the bench package to the running bench through these; handed on, they
    // would reach the build scripts of the nested build and make it rebuild needlessly.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text == "OUT_DIR"
            || [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .iter()
            .any(|prefix| name_text.starts_with(prefix))
        {
            command.env_remove(&name);
        }
    }
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo to build the function: {error}"));
    assert!(
        status.success(),
        "`cargo build --release` of the function failed ({status})"
    );
    let path = target_dir.join("release").join(BINARY_NAME);
    assert!(
        path.is_file(),
        "{} is missing after `cargo build --release`",
        path.display()
    );
    Binary {
        path,
        origin: "built by the bench with `cargo build --release --locked`",
    }
}

/// Where the function sends chunks.
#[derive(Clone, Copy)]
pub(crate) enum ChunksUrl<'a> {
    /// `MEMFAULT_CHUNKS_URL` set to this (loopback, plain http) URL.
    Loopback(&'a str),
    /// `MEMFAULT_CHUNKS_URL` unset: the https default, so init loads the CA store.
    Default,
}

/// Whether the function's stdout and stderr reach the terminal (`BENCH_FUNCTION_LOGS`) or
/// /dev/null.
pub(crate) fn show_logs() -> bool {
    std::env::var_os("BENCH_FUNCTION_LOGS").is_some()
}

/// A running function process. It is killed when dropped.
pub(crate) struct Function {
    child: Child,
    pub spawned_at: Instant,
}

impl Function {
    /// Starts the binary with the environment Lambda gives a function instance. Logs stay on at
    /// INFO, JSON formatted, as in production; they go to /dev/null unless `BENCH_FUNCTION_LOGS`
    /// is set.
    pub(crate) fn spawn(binary: &Path, runtime_api: &str, chunks_url: ChunksUrl<'_>) -> Self {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "memfault-chunk-proxy")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/25/[$LATEST]0123456789abcdef0123456789abcdef",
            )
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                "/aws/lambda/memfault-chunk-proxy",
            )
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_REGION", "eu-west-1")
            .stdin(Stdio::null());
        if let ChunksUrl::Loopback(url) = chunks_url {
            command.env("MEMFAULT_CHUNKS_URL", url);
        }
        if !show_logs() {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let spawned_at = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        Self { child, spawned_at }
    }

    /// Resolves when the process exits, which it never should on its own.
    pub(crate) async fn exited(&mut self) -> ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("the function's status") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The process's peak resident set size so far (`VmHWM`), in KiB.
    pub(crate) fn peak_rss_kib(&mut self) -> u64 {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the function exited early: {status}");
        }
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM line in {path}"))
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
