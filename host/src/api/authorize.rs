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
