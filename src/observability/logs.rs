//! Log lines: JSON or text, at the level Lambda's logging controls ask for.

use lambda_runtime::tracing::subscriber::filter::{LevelFilter, Targets};
use lambda_runtime::tracing::subscriber::layer::SubscriberExt as _;
use lambda_runtime::tracing::subscriber::util::SubscriberInitExt as _;

/// Targets that log secrets at TRACE, held at DEBUG whatever the level: the runtime logs every
/// raw event, whose topic carries the project key; the SigV4 signer logs the request it signs
/// (a failure record, with the topic) and the canonical request (with the session token).
const SECRET_TARGET_CAPS: [&str; 2] = ["lambda_runtime::layers::api_response", "aws_sigv4"];

/// Installs the global subscriber: JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`, text otherwise; level
/// from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO.
pub fn init_logging() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter = log_filter(&level);
    let builder = lambda_runtime::tracing::subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_target(false)
        .without_time();
    if json {
        // Flat lines query well in CloudWatch Logs Insights; the current span carries the
        // runtime's requestId, which ties every line to its invocation.
        let subscriber = builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish();
        subscriber.with(filter).init();
    } else {
        builder.finish().with(filter).init();
    }
}

/// Lambda's level names (`TRACE` … `FATAL`) and `RUST_LOG`-style `target=level` directives both
/// work; anything that cannot be read falls back to INFO. `Targets` rather than `EnvFilter`:
/// the function has no use for span and field filters, and `EnvFilter`'s regular expressions
/// are a quarter of the binary's size.
fn log_filter(level: &str) -> Targets {
    let level = match level.trim().to_ascii_lowercase().as_str() {
        "fatal" => "error".to_owned(),
        other => other.to_owned(),
    };
    let filter = match level.parse::<Targets>() {
        // Directives never hold white space; a stray phrase would silence every log line.
        Ok(filter) if !level.is_empty() && !level.contains(char::is_whitespace) => filter,
        _ => Targets::new(),
    };
    let filter = match filter.default_level() {
        Some(_) => filter,
        None => filter.with_default(LevelFilter::INFO),
    };
    SECRET_TARGET_CAPS.iter().fold(filter, |filter, target| {
        filter.with_target(*target, LevelFilter::DEBUG)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_level_names_map_to_filters() {
        for (input, expected) in [
            ("", "info"),
            ("WARN", "warn"),
            ("FATAL", "error"),
            ("debug", "debug"),
            ("memfault_chunk_proxy=trace", "memfault_chunk_proxy=trace"),
            ("not a level!!", "info"),
        ] {
            let filter = log_filter(input).to_string();
            let directives: Vec<&str> = filter.split(',').collect();
            assert!(directives.contains(&expected), "{input:?}: {filter}");
            for cap in SECRET_TARGET_CAPS {
                let directive = format!("{cap}=debug");
                assert!(
                    directives.contains(&directive.as_str()),
                    "{input:?}: {filter}"
                );
            }
        }
    }
}
