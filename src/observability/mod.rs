//! Logs and metrics.
//!
//! Logs go through `tracing`, formatted the way Lambda's advanced logging controls ask
//! (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`). Metrics are CloudWatch Embedded Metric
//! Format documents printed on stdout, which CloudWatch Logs turns into metrics without any API
//! call from the function.

mod logs;
mod metrics;

pub use logs::init_logging;
pub(crate) use metrics::emit_metrics;
pub use metrics::{InvocationMetrics, emf_documents};
