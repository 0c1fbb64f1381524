//! One indicator value and how it goes on the wire: integers, ratios and timestamps,
//! some counters sent as numeric strings as the real server does.

use serde_json::{Map, Value, json};

use crate::core::report::indicators::IndicatorKind;
use crate::sim::rng::hash;

/// One indicator value before it is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Val {
    Int(i64),
    Ratio(f64),
    Time(Option<i64>),
}

pub(super) fn ratio(a: i64, b: i64) -> Val {
    if b == 0 {
        Val::Ratio(0.0)
    } else {
        Val::Ratio((a as f64 / b as f64 * 10_000.0).round() / 10_000.0)
    }
}

pub(super) fn avg(sum: i64, n: i64) -> Val {
    Val::Int(if n == 0 { 0 } else { sum / n })
}

pub(super) trait Acc: Default + Clone {
    fn add(&mut self, other: &Self);
    /// The indicator's value, or `None` for a name this family does not know.
    fn value(&self, name: &str) -> Option<Val>;
}

/// Whether a value goes out as a numeric string: about one in four, fixed by indicator,
/// period and key so that refetching a period gives the same bytes.
pub(super) fn as_string(name: &str, period_start: i64, key: usize) -> bool {
    let name_word = name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    hash(&[name_word, period_start as u64, key as u64]).is_multiple_of(4)
}

pub(super) fn put(
    row: &mut Map<String, Value>,
    name: &str,
    kind: IndicatorKind,
    v: Val,
    stringly: bool,
) {
    let value = match (kind, v) {
        (IndicatorKind::Ratio, Val::Ratio(r)) => json!(r),
        (IndicatorKind::Ratio, Val::Int(i)) => json!(i as f64),
        (_, Val::Time(Some(t))) => json!(t),
        (_, Val::Time(None)) => json!(""),
        (_, Val::Int(i)) if stringly => Value::String(i.to_string()),
        (_, Val::Int(i)) => json!(i),
        (_, Val::Ratio(r)) => json!(r),
    };
    row.insert(name.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::report::indicators::Family;
    use crate::sim::reports::agent::AgentAcc;
    use crate::sim::reports::gateway::GatewayAcc;
    use crate::sim::reports::query::catalogue;

    #[test]
    fn every_catalogue_indicator_has_a_value_of_its_kind() {
        let g = GatewayAcc::default();
        let a = AgentAcc::default();
        for family in Family::ALL {
            for ind in &catalogue(family).indicators {
                let v = match family {
                    Family::GatewayNumbers => g.value(&ind.name),
                    _ => a.value(&ind.name),
                };
                let ok = matches!(
                    (ind.kind, v),
                    (
                        IndicatorKind::Counter | IndicatorKind::Duration,
                        Some(Val::Int(_))
                    ) | (IndicatorKind::Ratio, Some(Val::Ratio(_)))
                        | (IndicatorKind::Timestamp, Some(Val::Time(_)))
                );
                assert!(ok, "{family:?} {} gives {v:?}", ind.name);
            }
        }
    }
}
