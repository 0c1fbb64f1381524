//! The object store's replace: each merged file with one PUT, then its inputs in one
//! batch delete.

use crate::io::sink::SinkError;
use crate::io::store::Location;
use futures::StreamExt;
use object_store::{PutMode, PutOptions, PutPayload};

use super::CompactError;
use super::merge::Output;
use super::plan::SizedFile;
use crate::io::sink::merge::{self, SpanFile};

/// S3 (or any non-local store): each merged file with one PUT, then its inputs in one
/// batch delete.
pub(super) async fn replace_remote(
    loc: &Location,
    table: &str,
    outputs: Vec<Output>,
) -> Result<(), CompactError> {
    for (rel, encoded, group) in outputs {
        loc.store()
            .put_opts(
                &loc.path(&rel),
                PutPayload::from(encoded.bytes),
                PutOptions::from(PutMode::Overwrite),
            )
            .await
            .map_err(|source| CompactError::Sink {
                table: table.to_string(),
                source: Box::new(SinkError::Put {
                    path: loc.display(&rel),
                    source,
                }),
            })?;
        let inputs: Vec<String> = group
            .into_iter()
            .map(|g| g.file.rel)
            .filter(|r| *r != rel)
            .collect();
        delete_batch(loc, table, inputs).await?;
    }
    Ok(())
}

pub(super) async fn delete_batch(
    loc: &Location,
    table: &str,
    rels: Vec<String>,
) -> Result<(), CompactError> {
    if rels.is_empty() {
        return Ok(());
    }
    let paths: Vec<object_store::Result<object_store::path::Path>> =
        rels.iter().map(|r| Ok(loc.path(r))).collect();
    let results: Vec<_> = loc
        .store()
        .delete_stream(futures::stream::iter(paths).boxed())
        .collect()
        .await;
    for r in results {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(CompactError::Sink {
                    table: table.to_string(),
                    source: Box::new(SinkError::Delete {
                        path: loc.display(table),
                        source,
                    }),
                });
            }
        }
    }
    Ok(())
}

/// Deletes files lying inside another file's span (left by a cut write or a cut S3
/// batch delete: the wider file holds their rows), and returns the others.
pub(super) async fn drop_superseded(
    loc: &Location,
    table: &str,
    files: Vec<SizedFile>,
) -> Result<Vec<SizedFile>, CompactError> {
    let spans: Vec<SpanFile> = files.iter().map(|f| f.file.clone()).collect();
    let stale: Vec<SpanFile> = merge::superseded(&spans).into_iter().cloned().collect();
    if stale.is_empty() {
        return Ok(files);
    }
    for f in &stale {
        tracing::info!(path = %loc.display(&f.rel), "removing a file left inside a wider one by an interrupted write");
    }
    delete_batch(loc, table, stale.iter().map(|f| f.rel.clone()).collect()).await?;
    Ok(files
        .into_iter()
        .filter(|f| !stale.contains(&f.file))
        .collect())
}
