//! Secure by default: a node that would serve gRPC beyond loopback without
//! TLS, or gossip beyond loopback without a gossip key, refuses to start,
//! unless told `--insecure`.

use std::net::SocketAddr;

/// What a node is about to expose, and with which protection.
#[derive(Debug, Clone, Copy)]
pub struct Exposure {
    /// The gRPC listen address.
    pub grpc: SocketAddr,
    /// The gossip listen address.
    pub gossip: SocketAddr,
    /// Whether gRPC runs with mutual TLS.
    pub tls: bool,
    /// Whether gossip is sealed with a key.
    pub gossip_key: bool,
    /// `--insecure`: the operator accepts an open network port.
    pub insecure: bool,
}

/// Refuse to bind a non-loopback address unprotected unless `--insecure`
/// was given; the message names the flags that fix it.
pub fn check_exposure(exposure: &Exposure) -> Result<(), String> {
    if exposure.insecure {
        return Ok(());
    }
    let open: Vec<String> = [
        (
            "gRPC",
            exposure.grpc,
            exposure.tls,
            "TLS (--tls-ca, --tls-cert, --tls-key; see `clusterhost certs`)",
        ),
        (
            "gossip",
            exposure.gossip,
            exposure.gossip_key,
            "a gossip key (--gossip-key-file; see `clusterhost gossip keygen`)",
        ),
    ]
    .into_iter()
    .filter(|(_, addr, protected, _)| !protected && !addr.ip().is_loopback())
    .map(|(what, addr, _, fix)| format!("{what} on {addr} needs {fix}"))
    .collect();
    if open.is_empty() {
        return Ok(());
    }
    Err(format!(
        "refusing to serve unprotected beyond loopback: {}. Anyone who reaches \
         these ports could run any plugin and rewrite the cluster; give \
         --insecure to run unprotected anyway",
        open.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposure(grpc: &str, gossip: &str, protected: bool, insecure: bool) -> Exposure {
        Exposure {
            grpc: grpc.parse().expect("address"),
            gossip: gossip.parse().expect("address"),
            tls: protected,
            gossip_key: protected,
            insecure,
        }
    }

    #[test]
    fn loopback_needs_nothing() {
        assert_eq!(
            check_exposure(&exposure("127.0.0.1:1", "[::1]:2", false, false)),
            Ok(())
        );
    }

    #[test]
    fn a_real_network_needs_tls_or_insecure() {
        let error = check_exposure(&exposure("10.0.0.1:1", "127.0.0.1:2", false, false))
            .expect_err("refused");
        assert!(error.contains("gRPC on 10.0.0.1:1"), "{error}");
        assert!(error.contains("--insecure"), "{error}");
        let error = check_exposure(&exposure("127.0.0.1:1", "0.0.0.0:2", false, false))
            .expect_err("refused");
        assert!(error.contains("gossip on 0.0.0.0:2"), "{error}");
        let tls_only = Exposure {
            gossip_key: false,
            ..exposure("10.0.0.1:1", "10.0.0.1:2", true, false)
        };
        let error = check_exposure(&tls_only).expect_err("refused");
        assert!(error.contains("--gossip-key-file"), "{error}");
        assert!(!error.contains("gRPC"), "{error}");
        assert_eq!(
            check_exposure(&exposure("10.0.0.1:1", "10.0.0.1:2", true, false)),
            Ok(())
        );
        assert_eq!(
            check_exposure(&exposure("10.0.0.1:1", "10.0.0.1:2", false, true)),
            Ok(())
        );
    }
}
