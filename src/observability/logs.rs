//! Log lines: JSON or text, at the level Lambda's logging controls ask for.

use lambda_runtime::tracing::subscriber::EnvFilter;
use lambda_runtime::tracing::subscriber::filter::LevelFilter;

/// Targets that log secrets at TRACE, held at DEBUG whatever the level: the runtime logs every
/// raw event, whose topic carries the project key; the SigV4 signer logs the request it signs
/// (a failure record, with the topic) and the canonical request (with the session token).
const SECRET_TARGET_CAPS: [&str; 2] = [
    "lambda_runtime::layers::api_response=debug",
    "aws_sigv4=debug",
];

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
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    if json {
        // Flat lines query well in CloudWatch Logs Insights; the current span carries the
        // runtime's requestId, which ties every line to its invocation.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

/// Lambda's level names (`TRACE` … `FATAL`) and `RUST_LOG` directives both work; anything that
/// cannot be read falls back to INFO.
fn log_filter(level: &str) -> EnvFilter {
    let level = match level.trim().to_ascii_lowercase().as_str() {
        "fatal" => "error".to_owned(),
        // Directives never hold white space; a stray phrase would silence every log line.
        "" => "info".to_owned(),
        other if other.contains(char::is_whitespace) => "info".to_owned(),
        other => other.to_owned(),
    };
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(&level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    SECRET_TARGET_CAPS.iter().fold(filter, |filter, cap| {
        filter.add_directive(cap.parse().expect("the caps are valid directives"))
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
                assert!(directives.contains(&cap), "{input:?}: {filter}");
            }
        }
    }
}
