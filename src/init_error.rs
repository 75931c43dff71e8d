//! Tells Lambda why init failed, through the Runtime API's `/runtime/init/error`.
//!
//! Without it Lambda only sees the process exit (`Runtime.ExitError`), and the reason is left in
//! the logs. With it, the Invoke API's answer, the console and the failed event's destination
//! record name the cause. lambda_runtime has no public call for it, so it is posted here.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::ConfigError;
use crate::http_client::ClientInitError;

/// The Runtime API is local and answers in milliseconds; init as a whole has ten seconds. A
/// report that takes longer than this is abandoned, and the process exits all the same.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Lambda's `errorType` for an init failure. The Runtime API reference recommends the form
/// `Category.Reason` and names `Runtime.ConfigInvalid` and `Runtime.UnknownReason` among its
/// examples; a stable, documented name is what alarms and people searching for it can rely on.
/// A client that cannot be built (no readable CA certificates) gets a name of its own, since
/// the fix lies in the deployment rather than in a variable.
pub(crate) fn init_error_type(error: &lambda_runtime::Error) -> &'static str {
    if error.is::<ConfigError>() {
        "Runtime.ConfigInvalid"
    } else if error.is::<ClientInitError>() {
        "Runtime.ClientInitFailed"
    } else {
        "Runtime.UnknownReason"
    }
}

/// Posts `error` to `http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error`, with its
/// type in `Lambda-Runtime-Function-Error-Type` and `{"errorType", "errorMessage"}` as body.
/// Outside Lambda (no `AWS_LAMBDA_RUNTIME_API`) there is no one to tell. The message is the
/// error's own text, which quotes configuration with its secrets redacted.
pub async fn report_init_error(error: &lambda_runtime::Error) {
    let Ok(runtime_api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let error_type = init_error_type(error);
    let body = serde_json::json!({
        "errorType": error_type,
        "errorMessage": error.to_string(),
    });
    let request = Request::post(format!(
        "http://{runtime_api}/2018-06-01/runtime/init/error"
    ))
    .header("Lambda-Runtime-Function-Error-Type", error_type)
    .header(CONTENT_TYPE, "application/json")
    .body(Full::new(Bytes::from(body.to_string())));
    let request = match request {
        Ok(request) => request,
        Err(problem) => {
            tracing::warn!(error = %problem, "AWS_LAMBDA_RUNTIME_API does not make a valid URL");
            return;
        }
    };
    let client = Client::builder(TokioExecutor::new()).build_http();
    match tokio::time::timeout(REPORT_TIMEOUT, client.request(request)).await {
        Ok(Ok(answer)) if answer.status().is_success() => {}
        Ok(Ok(answer)) => {
            tracing::warn!(
                status = answer.status().as_u16(),
                "the Runtime API refused the init error"
            );
        }
        Ok(Err(problem)) => {
            tracing::warn!(error = %problem, "could not report the init error to the Runtime API");
        }
        Err(_) => tracing::warn!("the Runtime API did not take the init error in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn each_kind_of_init_failure_has_its_error_type() {
        let config_error =
            Config::from_lookup(|name| (name == "MEMFAULT_MAX_ATTEMPTS").then(|| "0".to_owned()))
                .unwrap_err();
        assert_eq!(
            init_error_type(&config_error.into()),
            "Runtime.ConfigInvalid"
        );
        let client_error = ClientInitError::Tls(rustls::Error::General("no".into()));
        assert_eq!(
            init_error_type(&client_error.into()),
            "Runtime.ClientInitFailed"
        );
        assert_eq!(
            init_error_type(&"something else".into()),
            "Runtime.UnknownReason"
        );
    }
}
