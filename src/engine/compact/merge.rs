//! Reads a run of window files and encodes them as one file named by their union.

use crate::core::pipeline::Pipeline;
use crate::io::sink::merge;
use crate::io::sink::{self, FileEncoder, SinkError, WindowFile};
use crate::io::store::Location;
use chrono::NaiveDate;

use super::CompactError;
use super::plan::SizedFile;

/// Reads a run of files (in span order) into one encoded file named by their union.
pub(super) async fn merge_group(
    loc: &Location,
    p: &Pipeline,
    dt: NaiveDate,
    group: &[SizedFile],
) -> Result<(String, sink::Encoded), CompactError> {
    let target = WindowFile {
        table: p.table.clone(),
        dt,
        start: group[0].file.start,
        end: group[group.len() - 1].file.end,
    };
    let name = target.relative_path();
    let sink_err = |source| CompactError::Sink {
        table: p.table.clone(),
        source: Box::new(source),
    };
    let encode_err = |e: parquet::errors::ParquetError| CompactError::Sink {
        table: p.table.clone(),
        source: Box::new(SinkError::Encode {
            path: loc.display(&name),
            source: e,
        }),
    };
    let join_err = |e: tokio::task::JoinError| CompactError::Io {
        table: p.table.clone(),
        path: loc.display(&name),
        message: format!("encoding task failed: {e}"),
    };
    let schema = p.schema.arrow.clone();
    let mut encoder = FileEncoder::new(schema.clone()).map_err(encode_err)?;
    for f in group {
        // One input at a time in memory; the encoder holds only compressed pages.
        let batches = merge::read_file(loc, &f.file.rel, &schema)
            .await
            .map_err(sink_err)?;
        encoder = tokio::task::spawn_blocking(move || {
            for b in &batches {
                encoder.write(b)?;
            }
            Ok::<_, parquet::errors::ParquetError>(encoder)
        })
        .await
        .map_err(join_err)?
        .map_err(encode_err)?;
    }
    let encoded = tokio::task::spawn_blocking(move || encoder.finish())
        .await
        .map_err(join_err)?
        .map_err(encode_err)?;
    Ok((name, encoded))
}

pub(super) type Output = (String, sink::Encoded, Vec<SizedFile>);
