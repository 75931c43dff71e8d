//! Log lines: JSON or text, at the level Lambda's logging controls ask for.

use lambda_runtime::tracing::subscriber::EnvFilter;
use lambda_runtime::tracing::subscriber::filter::LevelFilter;

/// The runtime logs every raw event at TRACE, and a raw event carries the project key in its
/// topic. That one target is held at DEBUG whatever the level, so no key reaches the logs whole.
const RAW_EVENT_TARGET_CAP: &str = "lambda_runtime::layers::api_response=debug";

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
    filter.add_directive(
        RAW_EVENT_TARGET_CAP
            .parse()
            .expect("the raw event cap is a valid directive"),
    )
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
            assert!(
                directives.contains(&RAW_EVENT_TARGET_CAP),
                "{input:?}: {filter}"
            );
        }
    }
}
