//! Firmware images served over AWS IoT MQTT-based file delivery by `thingkit serve`: every
//! file `DATA_DIR/streams/{streamId}/{fileId}` (file id 0–255) is a stream file, read from disk
//! at an offset for each block a device asks for. The server rescans the directory every two
//! seconds, so an image installed while it runs (`thingkit jobs create --envelope ... --image
//! ...`) is served without a restart. A stream's version is the newest modification time of
//! its files (seconds), so a device resuming a download after the image was replaced is told
//! `VersionMismatch` instead of mixing two images.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use thingkit_firmware::stream::{FileSource, StreamCatalog, StreamSource};

use crate::Failure;

/// The directory under the data directory that holds the streams.
pub const STREAMS_DIR: &str = "streams";

/// One stream file on disk, read at an offset.
#[derive(Debug)]
struct DiskFile {
    file: Mutex<std::fs::File>,
    size: u64,
}

impl FileSource for DiskFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// Whether `s` is an AWS stream id (1–128 of `[a-zA-Z0-9_-]`).
pub fn is_stream_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a scan saw of one stream: its files' (id, length, mtime), to notice changes.
type Seen = BTreeMap<String, Vec<(u8, u64, SystemTime)>>;

/// Keeps a catalog in step with `DATA_DIR/streams`.
#[derive(Debug)]
pub struct StreamDirectory {
    dir: PathBuf,
    catalog: Arc<RwLock<StreamCatalog>>,
    seen: Seen,
}

impl StreamDirectory {
    /// The streams under `data_dir`, published into `catalog`.
    pub fn new(data_dir: &Path, catalog: Arc<RwLock<StreamCatalog>>) -> Self {
        StreamDirectory {
            dir: data_dir.join(STREAMS_DIR),
            catalog,
            seen: Seen::new(),
        }
    }

    /// Adds new and changed streams to the catalog and removes vanished ones. Entries that are
    /// not a valid stream id or file id are ignored.
    pub fn scan(&mut self) {
        let mut now = Seen::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if !is_stream_id(&name) || !entry.path().is_dir() {
                    continue;
                }
                let mut files = Vec::new();
                if let Ok(inner) = std::fs::read_dir(entry.path()) {
                    for f in inner.flatten() {
                        let Some(id) = f.file_name().to_str().and_then(|n| n.parse::<u8>().ok())
                        else {
                            continue;
                        };
                        if let Ok(meta) = f.metadata()
                            && meta.is_file()
                        {
                            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                            files.push((id, meta.len(), mtime));
                        }
                    }
                }
                files.sort_unstable_by_key(|f| f.0);
                if !files.is_empty() {
                    now.insert(name, files);
                }
            }
        }
        if now == self.seen {
            return;
        }
        let mut catalog = self.catalog.write().unwrap_or_else(|p| p.into_inner());
        for gone in self.seen.keys().filter(|k| !now.contains_key(*k)) {
            catalog.remove(gone);
        }
        for (id, files) in &now {
            if self.seen.get(id) == Some(files) {
                continue;
            }
            let version = files
                .iter()
                .filter_map(|f| f.2.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .max()
                .unwrap_or(0);
            let mut stream = StreamSource::new(version, format!("thingkit stream {id}"));
            for (file_id, _, _) in files {
                let path = self.dir.join(id).join(file_id.to_string());
                let Ok(file) = std::fs::File::open(&path) else {
                    continue;
                };
                let Ok(size) = file.metadata().map(|m| m.len()) else {
                    continue;
                };
                stream = stream.with_file(
                    *file_id,
                    DiskFile {
                        file: Mutex::new(file),
                        size,
                    },
                );
            }
            catalog.insert(id.clone(), stream);
        }
        drop(catalog);
        self.seen = now;
    }
}

/// Copies `image` to `DATA_DIR/streams/{stream_id}/0` (written beside it, then renamed, so a
/// device never reads half a file). Returns the image size.
///
/// # Errors
///
/// An invalid stream id, or the copy failed.
pub fn install_image(data_dir: &Path, stream_id: &str, image: &Path) -> Result<u64, Failure> {
    if !is_stream_id(stream_id) {
        return Err(Failure(format!(
            "stream id {stream_id:?}: 1 to 128 of [a-zA-Z0-9_-]"
        )));
    }
    let dir = data_dir.join(STREAMS_DIR).join(stream_id);
    std::fs::create_dir_all(&dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    let tmp = dir.join(".0.tmp");
    let size = std::fs::copy(image, &tmp)
        .map_err(|e| Failure(format!("{} -> {}: {e}", image.display(), tmp.display())))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Failure(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, dir.join("0")).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_serves_installed_images_and_forgets_removed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fw.bin");
        std::fs::write(&image, vec![7u8; 5000]).unwrap();
        let catalog = Arc::new(RwLock::new(StreamCatalog::default()));
        let mut streams = StreamDirectory::new(dir.path(), catalog.clone());
        streams.scan();
        assert!(catalog.read().unwrap().is_empty());
        assert_eq!(install_image(dir.path(), "fw-2", &image).unwrap(), 5000);
        // Not streams: a bad id, a bad file id.
        std::fs::create_dir_all(dir.path().join("streams/bad id")).unwrap();
        std::fs::write(dir.path().join("streams/bad id/0"), b"x").unwrap();
        std::fs::write(dir.path().join("streams/fw-2/notes"), b"x").unwrap();
        streams.scan();
        {
            let c = catalog.read().unwrap();
            assert_eq!(c.len(), 1);
            let files: Vec<(u8, u64)> = c.get("fw-2").unwrap().files().collect();
            assert_eq!(files, [(0, 5000)]);
        }
        std::fs::remove_dir_all(dir.path().join("streams/fw-2")).unwrap();
        streams.scan();
        assert!(catalog.read().unwrap().get("fw-2").is_none());
        assert!(install_image(dir.path(), "../x", &image).is_err());
    }
}
