//! Local-disk durability shared by the receiver's key index and local compaction.

use std::path::Path;

/// Makes a folder's new entries and renames durable: a file's own sync does not cover
/// its name in the folder, so a crash could otherwise forget a rename already relied on.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
