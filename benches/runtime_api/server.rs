//! The accept loop both mock servers share: hyper 1, HTTP/1.1 with keep-alive, on loopback.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub(crate) type Reply = Response<Full<Bytes>>;

/// A running server. Dropping it stops the accept loop and closes every connection it holds.
pub(crate) struct Server {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `handler` on an ephemeral port of 127.0.0.1; `on_accept` runs for each new TCP
    /// connection.
    pub(crate) async fn start<H, F>(on_accept: impl Fn() + Send + 'static, handler: H) -> Self
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
        F: Future<Output = Reply> + Send + 'static,
    {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("bound address");
        let task = tokio::spawn(async move {
            // Connections live in the set so that aborting this task closes them all.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let (stream, _) = accepted.expect("accept a connection");
                        // Small answers must leave at once, not wait for the peer's delayed ACK.
                        stream.set_nodelay(true).expect("set TCP_NODELAY");
                        on_accept();
                        let handler = handler.clone();
                        let service = service_fn(move |request| {
                            let reply = handler(request);
                            async move { Ok::<_, Infallible>(reply.await) }
                        });
                        connections.spawn(async move {
                            // A peer that goes away (a killed function) is not an error here.
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        Self { address, task }
    }

    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}
