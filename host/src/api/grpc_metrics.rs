//! A tower layer around the gRPC server that counts and times every
//! request by method and status code, and counts requests another node
//! forwarded here.
//!
//! The code is read from the response headers: tonic sends a failed
//! unary call's `grpc-status` there ("trailers only"), and a successful
//! one's in trailers after the body, so a response whose headers carry no
//! status is counted as OK. A stream that fails after its headers were
//! sent is therefore counted as OK; every call clusterhost serves answers
//! before its body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::leader::FORWARDED_HEADER;
use crate::metrics::Metrics;

/// The `method` label of requests that name no method clusterhost serves
/// (outside its services, or answered Unimplemented), so a client
/// inventing paths cannot grow the label set without bound.
const UNKNOWN_METHOD: &str = "unknown";

/// Longest method path taken as a label.
const METHOD_LABEL_BYTES_MAX: usize = 96;

/// The `method` label for a request `path`: the path itself for
/// clusterhost's own services and gRPC reflection, else `UNKNOWN_METHOD`.
pub fn method_label(path: &str) -> &str {
    let ours = path.starts_with("/clusterhost.") || path.starts_with("/grpc.reflection.");
    if ours && path.len() <= METHOD_LABEL_BYTES_MAX && path[1..].contains('/') {
        path
    } else {
        UNKNOWN_METHOD
    }
}

/// The `code` label for a response whose headers carry `grpc_status`.
pub fn code_label(grpc_status: Option<&[u8]>) -> String {
    match grpc_status {
        None => format!("{:?}", tonic::Code::Ok),
        Some(bytes) => format!("{:?}", tonic::Code::from_bytes(bytes)),
    }
}

/// The layer: wraps the server's routes in [`GrpcMetrics`].
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
}

impl GrpcMetricsLayer {
    /// Record into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Metrics,
}

type Boxed<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, RB> tower_service::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Boxed<S::Response, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = method_label(request.uri().path()).to_string();
        let forwarded = request.headers().contains_key(FORWARDED_HEADER);
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let status = response
                .headers()
                .get("grpc-status")
                .map(|value| value.as_bytes());
            let code = code_label(status);
            let method = if code == format!("{:?}", tonic::Code::Unimplemented) {
                UNKNOWN_METHOD
            } else {
                &method
            };
            metrics.grpc_request(method, &code, started.elapsed(), forwarded);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_of_our_services_are_labels_and_anything_else_is_unknown() {
        assert_eq!(
            method_label("/clusterhost.v1.Cluster/Apply"),
            "/clusterhost.v1.Cluster/Apply"
        );
        assert_eq!(method_label("/evil.Service/Method"), UNKNOWN_METHOD);
        assert_eq!(method_label("/clusterhost.nothing"), UNKNOWN_METHOD);
        let long = format!("/clusterhost.v1.Cluster/{}", "x".repeat(200));
        assert_eq!(method_label(&long), UNKNOWN_METHOD);
    }

    #[test]
    fn a_missing_status_header_is_ok_and_codes_are_named() {
        assert_eq!(code_label(None), "Ok");
        assert_eq!(code_label(Some(b"14")), "Unavailable");
        assert_eq!(code_label(Some(b"0")), "Ok");
    }
}
