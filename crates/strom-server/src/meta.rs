//! `meta.properties`: the identity of a data directory (node id and
//! cluster id), as Kafka's `kafka-storage format` writes it. Strom needs no
//! format step: a new directory gets the file once the node has registered
//! with the quorum and learnt the cluster's id.

use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub node_id: i32,
    pub cluster_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("I/O error on meta.properties: {0}")]
    Io(#[from] std::io::Error),
    #[error("data directory belongs to node {found}, not node {expected}")]
    NodeMismatch { found: i32, expected: i32 },
    #[error("meta.properties is malformed")]
    Malformed,
}

const FILE: &str = "meta.properties";

impl MetaProperties {
    /// Reads `dir/meta.properties`: `None` for a directory not yet
    /// written by any node.
    pub fn load(dir: &Path, node_id: i32) -> Result<Option<MetaProperties>, MetaError> {
        let text = match std::fs::read_to_string(dir.join(FILE)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
        };
        let found: i32 = get("node.id")
            .and_then(|v| v.parse().ok())
            .ok_or(MetaError::Malformed)?;
        let cluster_id = get("cluster.id").ok_or(MetaError::Malformed)?.to_owned();
        if found != node_id {
            return Err(MetaError::NodeMismatch {
                found,
                expected: node_id,
            });
        }
        Ok(Some(MetaProperties {
            node_id,
            cluster_id,
        }))
    }

    /// Writes `dir/meta.properties` durably (a synced temporary file
    /// renamed over it, then the directory synced).
    pub fn store(&self, dir: &Path) -> Result<(), MetaError> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("meta.properties.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        write!(
            f,
            "version=1\nnode.id={}\ncluster.id={}\n",
            self.node_id, self.cluster_id
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_then_read() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(MetaProperties::load(dir.path(), 1).unwrap(), None);
        let m = MetaProperties {
            node_id: 1,
            cluster_id: "abc".into(),
        };
        m.store(dir.path()).unwrap();
        assert_eq!(MetaProperties::load(dir.path(), 1).unwrap(), Some(m));
        assert!(matches!(
            MetaProperties::load(dir.path(), 2),
            Err(MetaError::NodeMismatch { .. })
        ));
    }
}
