//! The local warehouse's swap: a partition built beside the table, exchanged with the
//! live one in one `renameat2(RENAME_EXCHANGE)` (two renames where that is missing).

use crate::io::store::Location;
use chrono::NaiveDate;
use std::path::{Path, PathBuf};

use super::merge::Output;
use super::{CompactError, STAGING_DIR, io_err};

/// On a local warehouse: the folder holding the table's partitions and the folder where
/// its partitions are built and retired (`<warehouse>/_compact/<table>`), both under the
/// tenant's partition when tenants are configured (`Location::local_path` places it), so
/// that a tenant's compaction only ever touches its own folders.
pub(super) fn local_dirs(loc: &Location, table: &str) -> Option<(PathBuf, PathBuf)> {
    let folder = |rel: String| {
        loc.local_path(&rel)
            .and_then(|p| p.parent().map(Path::to_path_buf))
    };
    Some((
        folder(format!("{table}/x"))?,
        folder(format!("{STAGING_DIR}/{table}/x"))?,
    ))
}

/// Puts back a partition a two-rename swap left out, then empties the table's staging
/// folder: what it holds is either half built or already swapped out, and the live
/// partitions are complete either way.
pub(super) async fn recover_staging(loc: &Location, table: &str) -> Result<(), CompactError> {
    let Some((live, staging)) = local_dirs(loc, table) else {
        return Ok(());
    };
    let table_s = table.to_string();
    tokio::task::spawn_blocking(move || -> Result<(), CompactError> {
        let entries = match std::fs::read_dir(&staging) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&table_s, &staging, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&table_s, &staging, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(folder) = name.strip_suffix(".old") {
                let target = live.join(folder);
                if !target.exists() {
                    tracing::warn!(partition = %target.display(), "restoring a partition an interrupted compaction left out");
                    std::fs::rename(entry.path(), &target)
                        .map_err(|e| io_err(&table_s, &target, e))?;
                }
            }
        }
        std::fs::remove_dir_all(&staging).map_err(|e| io_err(&table_s, &staging, e))
    })
    .await
    .map_err(|e| CompactError::Io {
        table: table.to_string(),
        path: STAGING_DIR.to_string(),
        message: e.to_string(),
    })?
}

/// Builds the new partition in the staging folder and swaps it in. Returns the folder
/// now holding the old files, to delete once readers are done with it.
pub(super) async fn swap_local(
    (table_dir, staging_parent): (PathBuf, PathBuf),
    table: &str,
    dt: NaiveDate,
    outputs: Vec<Output>,
) -> Result<PathBuf, CompactError> {
    let live = table_dir.join(crate::core::layout::dt_folder(dt));
    let staged = staging_parent.join(crate::core::layout::dt_folder(dt));
    let old = staging_parent.join(format!("{}.old", crate::core::layout::dt_folder(dt)));
    let table = table.to_string();
    tokio::task::spawn_blocking(move || -> Result<PathBuf, CompactError> {
        let err = |path: &Path, e: std::io::Error| io_err(&table, path, e);
        if staged.exists() {
            std::fs::remove_dir_all(&staged).map_err(|e| err(&staged, e))?;
        }
        std::fs::create_dir_all(&staged).map_err(|e| err(&staged, e))?;
        let mut inputs = std::collections::HashSet::new();
        for (rel, encoded, group) in &outputs {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            let path = staged.join(name);
            let mut f = std::fs::File::create(&path).map_err(|e| err(&path, e))?;
            std::io::Write::write_all(&mut f, &encoded.bytes).map_err(|e| err(&path, e))?;
            f.sync_all().map_err(|e| err(&path, e))?;
            for g in group {
                inputs.insert(
                    g.file
                        .rel
                        .rsplit('/')
                        .next()
                        .unwrap_or(&g.file.rel)
                        .to_string(),
                );
            }
        }
        // Everything else in the partition (unmerged files, recordings' MP3s) is kept.
        for entry in std::fs::read_dir(&live).map_err(|e| err(&live, e))? {
            let entry = entry.map_err(|e| err(&live, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if inputs.contains(&name) {
                continue;
            }
            let ty = entry.file_type().map_err(|e| err(&entry.path(), e))?;
            if !ty.is_file() {
                return Err(err(
                    &entry.path(),
                    std::io::Error::other(
                        "unexpected entry (not a file) in a partition; left alone, not compacted",
                    ),
                ));
            }
            let to = staged.join(&name);
            if std::fs::hard_link(entry.path(), &to).is_err() {
                std::fs::copy(entry.path(), &to).map_err(|e| err(&to, e))?;
            }
        }
        sync_dir(&staged);
        match exchange(&live, &staged) {
            Ok(()) => {
                sync_dir(live.parent().unwrap_or(&live));
                sync_dir(&staging_parent);
                Ok(staged)
            }
            Err(e) => {
                tracing::debug!("atomic exchange unavailable ({e}); swapping with two renames");
                std::fs::rename(&live, &old).map_err(|e| err(&live, e))?;
                std::fs::rename(&staged, &live).map_err(|e| err(&live, e))?;
                sync_dir(live.parent().unwrap_or(&live));
                Ok(old)
            }
        }
    })
    .await
    .map_err(|e| CompactError::Io {
        table: String::new(),
        path: STAGING_DIR.to_string(),
        message: e.to_string(),
    })?
}

/// Best effort: makes renames and new entries durable before the next step relies on them.
pub(super) fn sync_dir(dir: &Path) {
    let _ = crate::io::fs::sync_dir(dir);
}

/// Swaps two directories atomically (`renameat2(RENAME_EXCHANGE)`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let b = CString::new(b.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere there is no atomic exchange; the caller falls back to two renames.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no atomic directory exchange on this platform",
    ))
}

pub(super) async fn remove_dir(table: &str, dir: &Path) -> Result<(), CompactError> {
    let d = dir.to_path_buf();
    let table_s = table.to_string();
    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&table_s, &d, e)),
    })
    .await
    .map_err(|e| io_err(table, dir, e))?
}
