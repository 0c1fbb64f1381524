//! The pipeline-file rules of the kinds that are not time-windowed searches
//! (`reference`, `snapshot`, `recordings`). They live with the definitions, so that
//! reading a pipeline file needs nothing from the engine that runs it.

use crate::core::pipeline::{Kind, TimeFilter};

/// The parts of a pipeline file these kinds check (`pipeline::Pipeline::parse` hands
/// them over, so the file format stays in one place).
#[derive(Debug)]
pub struct DefinitionView<'a> {
    pub kind: Kind,
    pub endpoint: &'a str,
    pub parent: Option<&'a str>,
    pub page_size: Option<u32>,
    pub has_time_filter: bool,
    pub filter_keys: Vec<&'a str>,
    pub has_inherit: bool,
    pub has_child_concurrency: bool,
    pub lag_secs: u64,
    pub lookback_secs: u64,
}

/// Query parameters the snapshot pager sets itself.
const SNAPSHOT_RESERVED: &[&str] = &["product", "pageNum", "pageSize"];

/// Checks a `reference`, `snapshot` or `recordings` definition; returns the pipeline's
/// (parent, parent field, time filter, page size). Keys a kind does not use are errors
/// rather than silently ignored.
pub fn check_definition(
    d: &DefinitionView<'_>,
) -> Result<(Option<String>, Option<String>, TimeFilter, u32), String> {
    let kind = match d.kind {
        Kind::Reference => "reference",
        Kind::Snapshot => "snapshot",
        Kind::Recordings => "recordings",
        Kind::Search | Kind::Children | Kind::Report => {
            return Err("internal: not a snapshot kind".into());
        }
    };
    if d.has_time_filter || d.has_inherit {
        return Err(format!(
            "time_filter and inherit are not used by kind = {kind:?}; remove them"
        ));
    }
    match d.kind {
        Kind::Recordings => {
            if !d.endpoint.is_empty() {
                return Err("endpoint is not used by kind = \"recordings\": each talk's recordUrl is downloaded; remove it".into());
            }
            let parent = d.parent.ok_or_else(|| {
                "parent is required for kind = \"recordings\" (the talks pipeline whose recordUrl is downloaded)".to_string()
            })?;
            if d.page_size.is_some() || !d.filter_keys.is_empty() {
                return Err(
                    "page_size and filters are not used by kind = \"recordings\"; remove them"
                        .into(),
                );
            }
            Ok((Some(parent.to_string()), None, TimeFilter::EpochMs, 0))
        }
        _ => {
            if d.parent.is_some() || d.has_child_concurrency {
                return Err(format!(
                    "parent and child_concurrency are not used by kind = {kind:?}; remove them"
                ));
            }
            if d.lag_secs != 0 || d.lookback_secs != 0 {
                return Err(format!(
                    "kind = {kind:?} stores the present state on each run: lag_secs and lookback_secs must be 0"
                ));
            }
            if d.kind == Kind::Reference {
                if d.page_size.is_some() || !d.filter_keys.is_empty() {
                    return Err(
                        "page_size and filters are not used by kind = \"reference\"; remove them"
                            .into(),
                    );
                }
                return Ok((None, None, TimeFilter::EpochMs, 0));
            }
            if let Some(k) = d.filter_keys.iter().find(|k| SNAPSHOT_RESERVED.contains(k)) {
                return Err(format!("filters.{k} is set by the pager; remove it"));
            }
            let page_size = d
                .page_size
                .ok_or_else(|| "page_size is required for kind = \"snapshot\"".to_string())?;
            if !(1..=10_000).contains(&page_size) {
                return Err(format!("page_size = {page_size}: must be 1..=10000"));
            }
            Ok((None, None, TimeFilter::EpochMs, page_size))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(kind: Kind) -> DefinitionView<'static> {
        DefinitionView {
            kind,
            endpoint: "/x",
            parent: None,
            page_size: None,
            has_time_filter: false,
            filter_keys: Vec::new(),
            has_inherit: false,
            has_child_concurrency: false,
            lag_secs: 0,
            lookback_secs: 0,
        }
    }

    #[test]
    fn definitions_reject_keys_their_kind_does_not_use() {
        assert!(check_definition(&view(Kind::Reference)).is_ok());
        let mut v = view(Kind::Reference);
        v.page_size = Some(10);
        assert!(check_definition(&v).unwrap_err().contains("page_size"));
        let mut v = view(Kind::Snapshot);
        assert!(
            check_definition(&v)
                .unwrap_err()
                .contains("page_size is required")
        );
        v.page_size = Some(50);
        assert_eq!(check_definition(&v).map(|r| r.3), Ok(50));
        v.filter_keys = vec!["pageNum"];
        assert!(
            check_definition(&v)
                .unwrap_err()
                .contains("filters.pageNum")
        );
        v.filter_keys = vec!["departmentIds"];
        v.lag_secs = 60;
        assert!(check_definition(&v).unwrap_err().contains("lag_secs"));
        let mut v = view(Kind::Recordings);
        assert!(check_definition(&v).unwrap_err().contains("endpoint"));
        v.endpoint = "";
        assert!(
            check_definition(&v)
                .unwrap_err()
                .contains("parent is required")
        );
        v.parent = Some("talks");
        v.lookback_secs = 3600;
        v.has_child_concurrency = true;
        assert_eq!(
            check_definition(&v).map(|r| r.0),
            Ok(Some("talks".to_string()))
        );
    }
}
