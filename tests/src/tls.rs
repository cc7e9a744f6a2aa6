//! [`TestPki`]: certificates for a cluster running mutual TLS, made by the
//! real `clusterhost certs` command line in a directory of the test's.

use std::path::{Path, PathBuf};

use clusterhost_client::ClientTls;

use crate::cli::{CLI_TIMEOUT, run_cli};

/// A CA and the node and client certificates it signed, in one directory.
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// The CA in `dir`, made there (`clusterhost certs init`) unless one
    /// already is.
    pub async fn create(dir: &Path) -> Self {
        if !dir.join("ca.pem").exists() {
            let dir_arg = dir.to_string_lossy().into_owned();
            run_cli(["certs", "init", "--dir", &dir_arg], &[], CLI_TIMEOUT)
                .await
                .success();
        }
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The certificate and key of `name`.
    pub fn pair(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}-key.pem")),
        )
    }

    /// A node certificate for `name` valid at `ip`, made once (`clusterhost
    /// certs node`).
    pub async fn node(&self, name: &str, ip: std::net::IpAddr) -> (PathBuf, PathBuf) {
        let pair = self.pair(name);
        if !pair.0.exists() {
            let (dir, ip) = (self.dir.to_string_lossy().into_owned(), ip.to_string());
            let args = ["certs", "node", "--dir", &dir, "--name", name, "--ip", &ip];
            run_cli(args, &[], CLI_TIMEOUT).await.success();
        }
        pair
    }

    /// A client certificate for `name` with `role` (`reader`, `writer`,
    /// `admin`), made once (`clusterhost certs client`).
    pub async fn client(&self, name: &str, role: &str) -> ClientTls {
        let pair = self.pair(name);
        if !pair.0.exists() {
            let dir = self.dir.to_string_lossy().into_owned();
            let args = [
                "certs", "client", "--dir", &dir, "--name", name, "--role", role,
            ];
            run_cli(args, &[], CLI_TIMEOUT).await.success();
        }
        self.load(name)
    }

    /// The CA and `name`'s certificate, read.
    pub fn load(&self, name: &str) -> ClientTls {
        let (cert, key) = self.pair(name);
        ClientTls::from_files(&self.ca(), &cert, &key)
            .unwrap_or_else(|error| panic!("certificate {name}: {error}"))
    }

    /// The gossip key file `name` in the directory, made (`clusterhost
    /// gossip keygen`) unless it exists.
    pub async fn gossip_key(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        if !path.exists() {
            let output = run_cli(["gossip", "keygen"], &[], CLI_TIMEOUT).await;
            std::fs::write(&path, output.success()).expect("write the gossip key");
        }
        path
    }

    /// The environment that makes the CLI present `name`'s certificate.
    pub fn cli_env(&self, name: &str) -> Vec<(String, String)> {
        let (cert, key) = self.pair(name);
        [
            ("CLUSTERHOST_CACERT", self.ca()),
            ("CLUSTERHOST_CERT", cert),
            ("CLUSTERHOST_KEY", key),
        ]
        .into_iter()
        .map(|(key, path)| (key.to_string(), path.to_string_lossy().into_owned()))
        .collect()
    }
}
