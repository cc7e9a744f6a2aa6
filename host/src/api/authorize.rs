//! The one place calls are authorized: a tower layer in front of every
//! service on the gRPC port. It reads the role from the client certificate
//! of the connection and asks [`crate::security::authorize`]; a refusal is
//! answered `permission denied` before any handler runs, so it changes
//! nothing. Without TLS there are no certificates and it lets everything
//! through (the node then only serves loopback, or was told `--insecure`).

use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::codegen::Service;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;

use super::leader::FORWARDED_HEADER;
use crate::security::peer::identity_of;
use crate::security::{Refusal, authorize};

/// Adds [`Authorize`] in front of a service.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeLayer {
    /// Whether to check at all (only with mutual TLS).
    pub enabled: bool,
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            enabled: self.enabled,
        }
    }
}

/// A service that refuses calls the caller's role does not allow.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    enabled: bool,
}

impl<S, B, ResBody> Service<http::Request<B>> for Authorize<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !self.enabled {
            return Either::Left(self.inner.call(request));
        }
        match check(&request) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(refusal) => {
                tracing::warn!(method = request.uri().path(), "refused: {refusal}");
                let status = tonic::Status::permission_denied(refusal.to_string());
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

/// The decision for one request: its method, the role in the connection's
/// client certificate, and whether it claims to be forwarded.
fn check<B>(request: &http::Request<B>) -> Result<(), Refusal> {
    let certificates = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs);
    let role = certificates
        .as_deref()
        .and_then(|chain| chain.first())
        .and_then(|leaf| identity_of(leaf).role);
    let forwarded = request.headers().contains_key(FORWARDED_HEADER);
    authorize(request.uri().path(), role, forwarded)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Ready;

    use super::*;

    /// Answers every request with an empty body and no gRPC status.
    #[derive(Clone)]
    struct Answer;

    impl Service<http::Request<()>> for Answer {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(String::new())))
        }
    }

    fn apply_request() -> http::Request<()> {
        http::Request::builder()
            .uri("/clusterhost.v1.Cluster/Apply")
            .body(())
            .expect("request")
    }

    #[tokio::test]
    async fn with_tls_a_call_without_a_role_is_refused_before_the_service() {
        let mut layered = AuthorizeLayer { enabled: true }.layer(Answer);
        let response = layered.call(apply_request()).await.expect("answer");
        let code = response
            .headers()
            .get("grpc-status")
            .expect("a gRPC status");
        assert_eq!(code, &(tonic::Code::PermissionDenied as i32).to_string());
    }

    #[tokio::test]
    async fn without_tls_calls_pass_through() {
        let mut layered = AuthorizeLayer { enabled: false }.layer(Answer);
        let response = layered.call(apply_request()).await.expect("answer");
        assert!(response.headers().get("grpc-status").is_none());
    }
}
