//! Indicator catalogues (`schemas/indicators/<family>.toml`): which indicators each report
//! family has, of which kind, and which report of the family (inbound, outbound, work
//! status) carries them. A catalogue is data so that a new indicator is a schema edit.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Report families of the API document's Statistical Report section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Relay Number Report (`gateway-number-table`).
    GatewayNumbers,
    /// Agent Report (`agent-table`).
    Agents,
    /// Department Report (`depart-table`).
    Departments,
}

impl Family {
    pub const ALL: [Family; 3] = [Self::GatewayNumbers, Self::Agents, Self::Departments];

    /// The catalogue file name under `schemas/indicators/`, without `.toml`.
    pub fn file_stem(self) -> &'static str {
        match self {
            Self::GatewayNumbers => "gateway_numbers",
            Self::Agents => "agents",
            Self::Departments => "departments",
        }
    }

    /// The built-in copy of the catalogue, used when no `schemas/` folder exists.
    pub fn embedded(self) -> &'static str {
        match self {
            Self::GatewayNumbers => {
                include_str!("../../../schemas/indicators/gateway_numbers.toml")
            }
            Self::Agents => include_str!("../../../schemas/indicators/agents.toml"),
            Self::Departments => include_str!("../../../schemas/indicators/departments.toml"),
        }
    }
}

/// How an indicator's value is typed in the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorKind {
    /// A count of calls or legs: integer.
    Counter,
    /// A duration in the API's unit (seconds): integer.
    Duration,
    /// A ratio or percentage (the API's "Count" type): float.
    Ratio,
    /// A point in time (first login, last logout): TIMESTAMP.
    Timestamp,
}

/// Which report of a family carries an indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
    /// The agent work-status report (agentReportType 4).
    Status,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Indicator {
    /// The name as the API spells it in `customerFields` and in report rows.
    pub name: String,
    /// The label Sobot's console shows, for people reading the catalogue.
    pub label: String,
    pub kind: IndicatorKind,
    pub direction: Direction,
}

impl Indicator {
    /// Whether the report's `amount` of this indicator is the sum of its rows, so that
    /// reconciliation may add rows up. Ratios and timestamps are not sums; neither are
    /// the "Duration" averages (`*_average_duration`: ATT, ACT) nor the counts of
    /// distinct phone numbers (`outbound_customer_numbers`,
    /// `outbound_answer_gateway_numbers`: a number called in two periods counts once in
    /// the total). Decided by name because the API document gives these the same type
    /// as the sums they sit beside.
    pub fn is_additive(&self) -> bool {
        matches!(self.kind, IndicatorKind::Counter | IndicatorKind::Duration)
            && !self.name.contains("_average_")
            && !self.name.ends_with("_numbers")
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub family: Family,
    pub indicators: Vec<Indicator>,
}

impl Catalogue {
    /// Parses and checks a catalogue file; `origin` names the file in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, String> {
        let cat: Catalogue = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let mut seen = std::collections::HashSet::new();
        for ind in &cat.indicators {
            if ind.name.trim().is_empty() || ind.name.trim() != ind.name {
                return Err(format!(
                    "{origin}: indicator name {:?} is empty or padded",
                    ind.name
                ));
            }
            // The name becomes a column: it must be one DuckDB and Hive take unquoted,
            // and must not take the place of a column every report table has.
            if !ind
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                || ind.name.starts_with('_')
            {
                return Err(format!(
                    "{origin}: indicator name {:?}: only letters, digits and _, not starting with _",
                    ind.name
                ));
            }
            let taken = ["period_start", "period_end", "result_date"]
                .iter()
                .copied()
                .chain(
                    super::spec::dimension_fields(cat.family)
                        .iter()
                        .flat_map(|(f, c)| [*f, *c]),
                )
                .any(|n| n.eq_ignore_ascii_case(&ind.name));
            if taken {
                return Err(format!(
                    "{origin}: indicator name {:?} is a column every {} report has",
                    ind.name,
                    cat.family.file_stem()
                ));
            }
            if !seen.insert(ind.name.as_str()) {
                return Err(format!(
                    "{origin}: indicator {:?} is listed twice",
                    ind.name
                ));
            }
        }
        Ok(cat)
    }

    /// Parses a catalogue that must be `family`'s (it is found by its file name): a file
    /// naming another family is refused rather than silently used for the wrong report.
    pub fn parse_for(family: Family, origin: &str, text: &str) -> Result<Self, String> {
        let cat = Self::parse(origin, text)?;
        if cat.family != family {
            return Err(format!(
                "{origin}: family = {:?}, but this file is the catalogue of {:?}",
                cat.family.file_stem(),
                family.file_stem()
            ));
        }
        Ok(cat)
    }

    /// The built-in catalogue of `family`.
    pub fn embedded(family: Family) -> Self {
        match Self::parse(family.file_stem(), family.embedded()) {
            Ok(c) => c,
            // The embedded files are checked by a unit test; this cannot happen in a build
            // that passed its tests.
            Err(e) => panic!("embedded indicator catalogue is invalid: {e}"),
        }
    }

    /// The indicators a report of `direction` carries, in catalogue order.
    pub fn for_direction(&self, direction: Direction) -> impl Iterator<Item = &Indicator> {
        self.indicators
            .iter()
            .filter(move |i| i.direction == direction)
    }

    pub fn get(&self, name: &str) -> Option<&Indicator> {
        self.indicators.iter().find(|i| i.name == name)
    }
}

/// Where report pipelines take their indicator catalogues from. The rule is the one of
/// table schemas: when the configured schemas folder (`SOBOT_SYNC_SCHEMAS`) exists, its
/// `indicators/<family>.toml` are read, and a missing or invalid file is an error naming
/// it; when the folder does not exist, the built-in copies are used. Files are read only
/// for the families that a defined report pipeline uses, as table schemas are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogueSource {
    BuiltIn,
    /// The `indicators` folder inside an existing schemas folder.
    Folder(PathBuf),
}

impl CatalogueSource {
    /// The source for a schemas folder (see the type's documentation).
    pub fn for_schemas_dir(schemas_dir: &Path) -> Self {
        if schemas_dir.exists() {
            Self::Folder(schemas_dir.join("indicators"))
        } else {
            Self::BuiltIn
        }
    }

    /// The catalogue of `family`; the error names the file and what is wrong with it.
    pub fn load(&self, family: Family) -> Result<Catalogue, String> {
        match self {
            Self::BuiltIn => Ok(Catalogue::embedded(family)),
            Self::Folder(dir) => {
                let path = dir.join(format!("{}.toml", family.file_stem()));
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{shown}: cannot read: {e}"))?;
                Catalogue::parse_for(family, &shown, &text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalogues_parse_and_match_the_api_document() {
        let g = Catalogue::embedded(Family::GatewayNumbers);
        let a = Catalogue::embedded(Family::Agents);
        let d = Catalogue::embedded(Family::Departments);
        assert_eq!(
            (g.indicators.len(), a.indicators.len(), d.indicators.len()),
            (30, 76, 26)
        );
        assert_eq!(
            g.get("inbound_calls").map(|i| i.kind),
            Some(IndicatorKind::Counter)
        );
        assert_eq!(
            g.get("outbound_answer_ratio").map(|i| i.kind),
            Some(IndicatorKind::Ratio)
        );
        assert_eq!(
            a.get("agentLastLogout_timestamp")
                .map(|i| (i.kind, i.direction)),
            Some((IndicatorKind::Timestamp, Direction::Status))
        );
        assert_eq!(a.for_direction(Direction::Inbound).count(), 16);
        assert_eq!(a.for_direction(Direction::Outbound).count(), 11);
        assert_eq!(a.for_direction(Direction::Status).count(), 49);
        assert_eq!(d.for_direction(Direction::Status).count(), 0);
    }

    #[test]
    fn additive_indicators() {
        let g = Catalogue::embedded(Family::GatewayNumbers);
        let additive = |c: &Catalogue, n: &str| c.get(n).map(Indicator::is_additive);
        assert_eq!(additive(&g, "inbound_calls"), Some(true));
        assert_eq!(additive(&g, "inbound_calls_duration"), Some(true));
        assert_eq!(additive(&g, "inbound_calls_average_duration"), Some(false));
        assert_eq!(additive(&g, "outbound_customer_numbers"), Some(false));
        assert_eq!(additive(&g, "outbound_answer_gateway_numbers"), Some(false));
        assert_eq!(additive(&g, "outbound_answer_ratio"), Some(false));
        let a = Catalogue::embedded(Family::Agents);
        assert_eq!(additive(&a, "agentFirstLogin_timestamp"), Some(false));
        assert_eq!(additive(&a, "agent_login_sum_duration"), Some(true));
        assert_eq!(a.indicators.iter().filter(|i| i.is_additive()).count(), 56);
    }

    #[test]
    fn duplicates_and_unknown_keys_are_refused() {
        let dup = "family = \"agents\"\n[[indicators]]\nname=\"x\"\nlabel=\"X\"\nkind=\"counter\"\ndirection=\"inbound\"\n[[indicators]]\nname=\"x\"\nlabel=\"X\"\nkind=\"counter\"\ndirection=\"inbound\"\n";
        assert!(
            Catalogue::parse("f.toml", dup)
                .unwrap_err()
                .contains("listed twice")
        );
        let one = |name: &str| {
            format!(
                "family = \"agents\"\n[[indicators]]\nname=\"{name}\"\nlabel=\"X\"\nkind=\"counter\"\ndirection=\"inbound\"\n"
            )
        };
        assert!(Catalogue::parse("f.toml", &one("new_calls2")).is_ok());
        for bad in [
            "service_id",
            "serviceName",
            "period_start",
            "_extra",
            "a-b",
            "a b",
        ] {
            let e = Catalogue::parse("f.toml", &one(bad)).unwrap_err();
            assert!(e.contains("f.toml") && e.contains(bad), "{bad}: {e}");
        }
        let unknown = "family = \"agents\"\nbogus = 1\nindicators = []\n";
        assert!(
            Catalogue::parse("f.toml", unknown)
                .unwrap_err()
                .contains("f.toml")
        );
    }

    #[test]
    fn catalogues_come_from_an_existing_schemas_folder() {
        let missing = Path::new("/nonexistent/schemas");
        assert_eq!(
            CatalogueSource::for_schemas_dir(missing),
            CatalogueSource::BuiltIn
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let src = CatalogueSource::for_schemas_dir(dir.path());
        let e = src.load(Family::Agents).unwrap_err();
        assert!(e.contains("indicators/agents.toml"), "{e}");
        std::fs::create_dir(dir.path().join("indicators")).expect("mkdir");
        let file = dir.path().join("indicators/agents.toml");
        std::fs::write(&file, Family::Departments.embedded()).expect("write");
        let e = src.load(Family::Agents).unwrap_err();
        assert!(
            e.contains("agents.toml") && e.contains("departments"),
            "{e}"
        );
        let text = format!(
            "{}\n[[indicators]]\nname = \"brand_new\"\nlabel = \"New\"\nkind = \"ratio\"\ndirection = \"inbound\"\n",
            Family::Agents.embedded()
        );
        std::fs::write(&file, text).expect("write");
        let cat = src.load(Family::Agents).expect("catalogue");
        assert_eq!(
            cat.get("brand_new").map(|i| i.kind),
            Some(IndicatorKind::Ratio)
        );
    }
}
