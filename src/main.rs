use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use memfault_chunk_proxy::init_logging;
use memfault_chunk_proxy::report_init_error;
use memfault_chunk_proxy::{Config, Forwarder};
use serde_json::value::RawValue;

// One thread is plenty: the work is waiting on the network, and Lambda hands out one event at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    init_logging();
    let forwarder = match Config::from_env()
        .map_err(Error::from)
        .and_then(|config| Forwarder::new(config).map_err(Error::from))
    {
        Ok(forwarder) => Arc::new(forwarder),
        Err(error) => {
            tracing::error!(error = %error, "initialisation failed");
            report_init_error(&error).await;
            return Err(error);
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let forwarder = Arc::clone(&forwarder);
        async move { forwarder.handle(event).await }
    }))
    .await
}
