//! Secure by default: a node that would serve gRPC or the ops listener
//! (`--metrics-listen`) beyond loopback without TLS, or gossip beyond
//! loopback without a gossip key, refuses to start, unless told
//! `--insecure`.

use std::net::SocketAddr;

/// What a node is about to expose, and with which protection.
#[derive(Debug, Clone, Copy)]
pub struct Exposure {
    /// The gRPC listen address.
    pub grpc: SocketAddr,
    /// The gossip listen address.
    pub gossip: SocketAddr,
    /// The ops listener's address (`--metrics-listen`), if it serves.
    pub ops: Option<SocketAddr>,
    /// Whether gRPC and the ops listener run with mutual TLS.
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
    const TLS: &str = "TLS (--tls-ca, --tls-cert, --tls-key; see `clusterhost certs`)";
    const CONTROL: &str = "run any plugin and rewrite the cluster";
    const READ: &str = "read its members and state";
    let listeners = [
        Some(("gRPC", exposure.grpc, exposure.tls, TLS, CONTROL)),
        Some((
            "gossip",
            exposure.gossip,
            exposure.gossip_key,
            "a gossip key (--gossip-key-file; see `clusterhost gossip keygen`)",
            CONTROL,
        )),
        exposure.ops.map(|addr| {
            let what = "the ops listener (--metrics-listen)";
            (what, addr, exposure.tls, TLS, READ)
        }),
    ];
    let open: Vec<_> = listeners
        .into_iter()
        .flatten()
        .filter(|(_, addr, protected, _, _)| !protected && !addr.ip().is_loopback())
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let needs: Vec<String> = open
        .iter()
        .map(|(what, addr, _, fix, _)| format!("{what} on {addr} needs {fix}"))
        .collect();
    let mut risks: Vec<&str> = open.iter().map(|(.., risk)| *risk).collect();
    risks.dedup();
    Err(format!(
        "refusing to serve unprotected beyond loopback: {}. Anyone who reaches \
         these ports could {}; give --insecure to run unprotected anyway",
        needs.join("; "),
        risks.join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposure(grpc: &str, gossip: &str, protected: bool, insecure: bool) -> Exposure {
        Exposure {
            grpc: grpc.parse().expect("address"),
            gossip: gossip.parse().expect("address"),
            ops: None,
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

    #[test]
    fn the_ops_listener_beyond_loopback_needs_tls_or_insecure() {
        let with_ops = |ops: &str, tls: bool, insecure: bool| Exposure {
            ops: Some(ops.parse().expect("address")),
            gossip_key: true,
            ..exposure("127.0.0.1:1", "127.0.0.1:2", tls, insecure)
        };
        // Loopback stays plaintext without TLS, as it always was.
        assert_eq!(
            check_exposure(&with_ops("127.0.0.1:3", false, false)),
            Ok(())
        );
        assert_eq!(check_exposure(&with_ops("[::1]:3", false, false)), Ok(()));
        let error = check_exposure(&with_ops("0.0.0.0:3", false, false)).expect_err("refused");
        assert!(
            error.contains("the ops listener (--metrics-listen) on 0.0.0.0:3 needs TLS"),
            "{error}"
        );
        assert!(error.contains("--insecure"), "{error}");
        assert!(!error.contains("gRPC on"), "{error}");
        // With TLS configured it serves TLS, so any address is fine.
        assert_eq!(check_exposure(&with_ops("10.0.0.1:3", true, false)), Ok(()));
        assert_eq!(check_exposure(&with_ops("10.0.0.1:3", false, true)), Ok(()));
    }
}
