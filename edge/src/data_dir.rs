//! What an edge keeps on disk: its node id (`<data_dir>/node_id`) and the last-known-good
//! snapshot of each control plane (`<data_dir>/snapshots/<id>.lz4`, its JSON in an LZ4 frame),
//! written atomically (temp file, fsync, rename, fsync of the directory) so a crash never leaves
//! a torn file behind.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tollgate_bus::packing;
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

/// A snapshot's body as it arrived and was checked against the snapshot's hash, so the store can
/// write it without encoding the snapshot again.
#[derive(Debug)]
pub enum ArrivedBody {
    /// The JSON itself, as buses published it before bodies were packed.
    Json(Vec<u8>),
    /// The JSON in an LZ4 frame ([`tollgate_bus::packing`]), as the NATS bus delivers it.
    Packed(Vec<u8>),
}

/// How a stored file holds its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `<id>.lz4`: the JSON in an LZ4 frame, as every store writes it.
    Packed,
    /// `<id>.json`: plain JSON, as edges stored snapshots before 2026-11-27; still read at start.
    Json,
}

impl LastKnownGood {
    pub fn new(data_dir: &Path) -> io::Result<LastKnownGood> {
        let dir = data_dir.join("snapshots");
        fs::create_dir_all(&dir)?;
        Ok(LastKnownGood { dir })
    }

    fn path_of(&self, id: Uuid, form: Form) -> PathBuf {
        match form {
            Form::Packed => self.dir.join(format!("{id}.lz4")),
            Form::Json => self.dir.join(format!("{id}.json")),
        }
    }

    /// Every stored snapshot that unpacks, parses and verifies (only `only`'s when given); the
    /// others are skipped with a warning. Where a control plane has both a packed file and a
    /// plain one (an edge stopped between writing the first and deleting the second), the newer
    /// snapshot is kept.
    pub fn load_all(&self, only: Option<Uuid>) -> io::Result<Vec<Snapshot>> {
        let mut snapshots: BTreeMap<Uuid, Snapshot> = BTreeMap::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some((id, form)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| {
                    let packed = n.strip_suffix(".lz4").map(|id| (id, Form::Packed));
                    packed.or_else(|| n.strip_suffix(".json").map(|id| (id, Form::Json)))
                })
                .and_then(|(id, form)| Some((Uuid::parse_str(id).ok()?, form)))
            else {
                continue;
            };
            if only.is_some_and(|only| only != id) {
                continue;
            }
            match read_snapshot(&path, id, form) {
                Ok(snapshot) => {
                    if snapshots
                        .get(&id)
                        .is_none_or(|kept| kept.version < snapshot.version)
                    {
                        snapshots.insert(id, snapshot);
                    }
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "skipping last-known-good snapshot");
                }
            }
        }
        Ok(snapshots.into_values().collect())
    }

    /// Writes `snapshot` packed, as `<id>.lz4`, and deletes a plain `<id>.json` an older edge
    /// left. `arrived` is the body it came in, when the caller has checked it against the
    /// snapshot's hash: a packed one is written as it is, which saves encoding and packing MiBs
    /// again (a 10,000-route snapshot is 4.6 MB of JSON and 208 KB packed).
    pub fn store(&self, snapshot: &Snapshot, arrived: Option<&ArrivedBody>) -> io::Result<()> {
        let id = snapshot.control_plane_id;
        let packed = match arrived {
            Some(ArrivedBody::Packed(frame)) => Cow::Borrowed(frame.as_slice()),
            Some(ArrivedBody::Json(json)) => Cow::Owned(packing::pack(json)),
            None => {
                let json = serde_json::to_vec(snapshot).map_err(io::Error::other)?;
                Cow::Owned(packing::pack(&json))
            }
        };
        write_atomically(&self.path_of(id, Form::Packed), &packed)?;
        remove_if_present(&self.path_of(id, Form::Json))
    }

    pub fn remove(&self, id: Uuid) -> io::Result<()> {
        remove_if_present(&self.path_of(id, Form::Packed))?;
        remove_if_present(&self.path_of(id, Form::Json))
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn read_snapshot(path: &Path, id: Uuid, form: Form) -> Result<Snapshot, String> {
    let mut body = fs::read(path).map_err(|e| e.to_string())?;
    if form == Form::Packed {
        body = packing::unpack(&body)?;
    }
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

    fn snapshot(version: i64, hostnames: Vec<String>) -> Snapshot {
        Snapshot::compile(
            Uuid::now_v7(),
            Uuid::now_v7(),
            version,
            hostnames,
            vec![],
            vec![],
        )
    }

    fn file(dir: &Path, id: Uuid, suffix: &str) -> PathBuf {
        dir.join("snapshots").join(format!("{id}.{suffix}"))
    }

    #[test]
    fn stores_packed_loads_and_skips_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let lkg = LastKnownGood::new(dir.path()).unwrap();
        let good = snapshot(3, vec!["a.test".into()]);
        lkg.store(&good, None).unwrap();
        let stored = fs::read(file(dir.path(), good.control_plane_id, "lz4")).unwrap();
        assert_eq!(
            packing::unpack(&stored).unwrap(),
            serde_json::to_vec(&good).unwrap()
        );
        let mut torn = snapshot(1, vec![]);
        torn.hostnames.push("edited.test".into());
        lkg.store(&torn, None).unwrap();

        // A packed body as it arrived is written as it is; a plain one is packed.
        let arrived = snapshot(2, vec![]);
        let json = serde_json::to_vec_pretty(&arrived).unwrap();
        let frame = packing::pack(&json);
        lkg.store(&arrived, Some(&ArrivedBody::Packed(frame.clone())))
            .unwrap();
        let path = file(dir.path(), arrived.control_plane_id, "lz4");
        assert_eq!(fs::read(&path).unwrap(), frame);
        lkg.store(&arrived, Some(&ArrivedBody::Json(json.clone())))
            .unwrap();
        assert_eq!(packing::unpack(&fs::read(&path).unwrap()).unwrap(), json);
        assert_eq!(
            lkg.load_all(Some(arrived.control_plane_id)).unwrap(),
            vec![arrived.clone()]
        );
        lkg.remove(arrived.control_plane_id).unwrap();
        assert!(!path.exists());

        // Unreadable files of both forms are skipped.
        fs::write(file(dir.path(), Uuid::now_v7(), "json"), "{").unwrap();
        fs::write(file(dir.path(), Uuid::now_v7(), "lz4"), b"{").unwrap();
        let mut damaged = packing::pack(&serde_json::to_vec(&good).unwrap());
        let middle = damaged.len() / 2;
        damaged.truncate(middle);
        fs::write(file(dir.path(), Uuid::now_v7(), "lz4"), damaged).unwrap();
        assert_eq!(lkg.load_all(None).unwrap(), vec![good.clone()]);
        assert!(lkg
            .load_all(Some(torn.control_plane_id))
            .unwrap()
            .is_empty());
        lkg.remove(good.control_plane_id).unwrap();
        lkg.remove(good.control_plane_id).unwrap();
        assert!(!file(dir.path(), good.control_plane_id, "lz4").exists());
        assert!(lkg.load_all(None).unwrap().is_empty());
    }

    #[test]
    fn plain_files_of_older_edges_still_load_and_give_way_to_packed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let lkg = LastKnownGood::new(dir.path()).unwrap();
        let old = snapshot(4, vec!["old.test".into()]);
        let id = old.control_plane_id;
        let legacy = file(dir.path(), id, "json");
        fs::write(&legacy, serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(lkg.load_all(None).unwrap(), vec![old.clone()]);

        // Both forms on disk (stopped between writing one and deleting the other): the newer wins,
        // whichever form holds it.
        let mut newer = Snapshot::compile(
            id,
            Uuid::now_v7(),
            5,
            vec!["new.test".into()],
            vec![],
            vec![],
        );
        let packed = file(dir.path(), id, "lz4");
        fs::write(&packed, packing::pack(&serde_json::to_vec(&newer).unwrap())).unwrap();
        assert_eq!(lkg.load_all(Some(id)).unwrap(), vec![newer.clone()]);
        // The version is not part of the content, so the hash still holds.
        newer.version = 3;
        fs::write(&packed, packing::pack(&serde_json::to_vec(&newer).unwrap())).unwrap();
        assert_eq!(lkg.load_all(Some(id)).unwrap(), vec![old.clone()]);

        // Storing writes the packed form and deletes the plain one.
        lkg.store(&old, None).unwrap();
        assert!(!legacy.exists());
        assert_eq!(lkg.load_all(None).unwrap(), vec![old]);
        fs::write(&legacy, b"{}").unwrap();
        lkg.remove(id).unwrap();
        assert!(!legacy.exists() && !packed.exists());
    }
}
