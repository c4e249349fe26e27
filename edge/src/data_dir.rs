//! What an edge keeps on disk: its node id (`<data_dir>/node_id`) and the last-known-good
//! snapshot of each control plane (`<data_dir>/snapshots/<id>.json`), written atomically (temp
//! file, fsync, rename, fsync of the directory) so a crash never leaves a torn file behind.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tollgate_model::Snapshot;
use uuid::Uuid;

/// Reads the node id, creating and persisting a new one on first start.
pub fn load_or_create_node_id(data_dir: &Path) -> io::Result<Uuid> {
    fs::create_dir_all(data_dir)?;
    let path = data_dir.join("node_id");
    match fs::read_to_string(&path) {
        Ok(text) => Uuid::parse_str(text.trim()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a UUID: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = Uuid::now_v7();
            write_atomically(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// The last-known-good snapshots of one edge.
#[derive(Debug, Clone)]
pub struct LastKnownGood {
    dir: PathBuf,
}

impl LastKnownGood {
    pub fn new(data_dir: &Path) -> io::Result<LastKnownGood> {
        let dir = data_dir.join("snapshots");
        fs::create_dir_all(&dir)?;
        Ok(LastKnownGood { dir })
    }

    fn path_of(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Every stored snapshot that parses and verifies (only `only`'s when given); the others are
    /// skipped with a warning.
    pub fn load_all(&self, only: Option<Uuid>) -> io::Result<Vec<Snapshot>> {
        let mut snapshots = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| Uuid::parse_str(n).ok())
            else {
                continue;
            };
            if only.is_some_and(|only| only != id) {
                continue;
            }
            match read_snapshot(&path, id) {
                Ok(snapshot) => snapshots.push(snapshot),
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "skipping last-known-good snapshot");
                }
            }
        }
        Ok(snapshots)
    }

    /// Writes `snapshot`; `encoded` is its JSON as it arrived, when the caller has it and has
    /// checked it against the snapshot's hash: written as it is, it saves encoding MiBs again.
    pub fn store(&self, snapshot: &Snapshot, encoded: Option<&[u8]>) -> io::Result<()> {
        let path = self.path_of(snapshot.control_plane_id);
        match encoded {
            Some(body) => write_atomically(&path, body),
            None => {
                let body = serde_json::to_vec(snapshot).map_err(io::Error::other)?;
                write_atomically(&path, &body)
            }
        }
    }

    pub fn remove(&self, id: Uuid) -> io::Result<()> {
        match fs::remove_file(self.path_of(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn read_snapshot(path: &Path, id: Uuid) -> Result<Snapshot, String> {
    let body = fs::read(path).map_err(|e| e.to_string())?;
    let snapshot: Snapshot = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if snapshot.control_plane_id != id {
        return Err(format!("holds control plane {}", snapshot.control_plane_id));
    }
    if !snapshot.verify() {
        return Err("content does not match its hash".into());
    }
    Ok(snapshot)
}

fn write_atomically(path: &Path, body: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(format!(".{}.tmp", Uuid::new_v4().simple()));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(body)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_id_persists() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_node_id(dir.path()).unwrap();
        assert_eq!(load_or_create_node_id(dir.path()).unwrap(), first);
        fs::write(dir.path().join("node_id"), "garbage").unwrap();
        assert!(load_or_create_node_id(dir.path()).is_err());
    }

    #[test]
    fn stores_loads_and_skips_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let lkg = LastKnownGood::new(dir.path()).unwrap();
        let good = Snapshot::compile(
            Uuid::now_v7(),
            Uuid::now_v7(),
            3,
            vec!["a.test".into()],
            vec![],
            vec![],
        );
        lkg.store(&good, None).unwrap();
        let mut torn = Snapshot::compile(Uuid::now_v7(), Uuid::now_v7(), 1, vec![], vec![], vec![]);
        torn.hostnames.push("edited.test".into());
        lkg.store(&torn, None).unwrap();
        // A body as it arrived is written as it is, and loads back as the snapshot.
        let arrived = Snapshot::compile(Uuid::now_v7(), Uuid::now_v7(), 2, vec![], vec![], vec![]);
        let body = serde_json::to_vec_pretty(&arrived).unwrap();
        lkg.store(&arrived, Some(&body)).unwrap();
        let path = dir
            .path()
            .join("snapshots")
            .join(format!("{}.json", arrived.control_plane_id));
        assert_eq!(fs::read(&path).unwrap(), body);
        assert_eq!(
            lkg.load_all(Some(arrived.control_plane_id)).unwrap(),
            vec![arrived.clone()]
        );
        lkg.remove(arrived.control_plane_id).unwrap();
        fs::write(
            dir.path()
                .join("snapshots")
                .join(format!("{}.json", Uuid::now_v7())),
            "{",
        )
        .unwrap();
        assert_eq!(lkg.load_all(None).unwrap(), vec![good.clone()]);
        assert!(lkg
            .load_all(Some(torn.control_plane_id))
            .unwrap()
            .is_empty());
        lkg.remove(good.control_plane_id).unwrap();
        lkg.remove(good.control_plane_id).unwrap();
        assert!(lkg.load_all(None).unwrap().is_empty());
    }
}
