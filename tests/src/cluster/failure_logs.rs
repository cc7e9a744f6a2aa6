//! What a failed test leaves behind: every node stopped, the tail of each
//! node's log printed, and the whole logs kept outside the temp dir.

use super::TestCluster;

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(process) = node.process.take() {
                process.kill();
            }
        }
        if std::thread::panicking() {
            eprintln!("test failed; node logs follow:{}", self.log_tails());
            self.keep_logs();
        }
    }
}

impl TestCluster {
    /// Copy every node's whole log out of the temp dir (which is deleted)
    /// to `<tmp>/clusterhost-failed-logs/<cluster>/`, and say where.
    fn keep_logs(&self) {
        let name = self.root.path().file_name().unwrap_or_default();
        let kept = std::env::temp_dir()
            .join("clusterhost-failed-logs")
            .join(name);
        if std::fs::create_dir_all(&kept).is_err() {
            return;
        }
        for node in &self.nodes {
            let _ = std::fs::copy(
                node.log_path(),
                kept.join(format!("node-{}.log", node.index)),
            );
        }
        eprintln!("full node logs kept in {}", kept.display());
    }
}
