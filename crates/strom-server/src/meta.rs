//! `meta.properties`: the identity of a data directory (node id and
//! cluster id), written once like Kafka's `kafka-storage format` does.

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

/// Kafka prints ids as URL-safe base64 without padding.
pub(crate) fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

impl MetaProperties {
    /// Reads `dir/meta.properties`, or writes a new one with a fresh cluster id.
    pub fn load_or_create(dir: &Path, node_id: i32) -> Result<MetaProperties, MetaError> {
        let path = dir.join("meta.properties");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
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
                Ok(MetaProperties {
                    node_id,
                    cluster_id,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                let cluster_id = base64_url(uuid::Uuid::new_v4().as_bytes());
                let tmp = dir.join("meta.properties.tmp");
                std::fs::write(
                    &tmp,
                    format!("version=1\nnode.id={node_id}\ncluster.id={cluster_id}\n"),
                )?;
                std::fs::rename(&tmp, &path)?;
                Ok(MetaProperties {
                    node_id,
                    cluster_id,
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_kafka() {
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64_url(&[0u8; 16]).len(), 22);
    }

    #[test]
    fn created_once_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = MetaProperties::load_or_create(dir.path(), 1).unwrap();
        let b = MetaProperties::load_or_create(dir.path(), 1).unwrap();
        assert_eq!(a, b);
        assert!(matches!(
            MetaProperties::load_or_create(dir.path(), 2),
            Err(MetaError::NodeMismatch { .. })
        ));
    }
}
