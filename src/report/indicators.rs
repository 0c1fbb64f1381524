//! Indicator catalogues (`schemas/indicators/<family>.toml`): which indicators each report
//! family has, of which kind, and which report of the family (inbound, outbound, work
//! status) carries them. A catalogue is data so that a new indicator is a schema edit.

use serde::Deserialize;

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
            Self::GatewayNumbers => include_str!("../../schemas/indicators/gateway_numbers.toml"),
            Self::Agents => include_str!("../../schemas/indicators/agents.toml"),
            Self::Departments => include_str!("../../schemas/indicators/departments.toml"),
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
            if !seen.insert(ind.name.as_str()) {
                return Err(format!(
                    "{origin}: indicator {:?} is listed twice",
                    ind.name
                ));
            }
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
        let unknown = "family = \"agents\"\nbogus = 1\nindicators = []\n";
        assert!(
            Catalogue::parse("f.toml", unknown)
                .unwrap_err()
                .contains("f.toml")
        );
    }
}
