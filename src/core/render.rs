//! Stored values back in the API's form, for children that inherit fields of a parent
//! read from the parent table (issue 15): the child's own conversion then reads them as
//! it would have read the API's value.
//!
//! The stored column types lose no information a child needs: `timestamp_ms` comes back
//! as epoch milliseconds, `local_time` as the local `yyyy-MM-dd HH:mm:ss` string in the
//! tenant's zone, `json` as its JSON text, the rest as JSON scalars.

use crate::core::schema::ColumnType;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
use chrono_tz::Tz;

/// Row `row` of `array` (a column of type `ty`) as JSON text in the API's form; `None`
/// for a null (a child then keeps its own value, as for a missing parent field) or a
/// column whose stored type is not `ty`'s (a file written under another schema).
pub fn api_json(ty: ColumnType, array: &dyn Array, row: usize, tz: Tz) -> Option<String> {
    if row >= array.len() || array.is_null(row) {
        return None;
    }
    match ty {
        ColumnType::String => array
            .as_string_opt::<i32>()
            .and_then(|a| serde_json::to_string(a.value(row)).ok()),
        ColumnType::Json => array.as_string_opt::<i32>().map(|a| {
            let text = a.value(row);
            if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                text.to_string()
            } else {
                serde_json::Value::String(text.to_string()).to_string()
            }
        }),
        ColumnType::Int => array
            .as_primitive_opt::<Int64Type>()
            .map(|a| a.value(row).to_string()),
        ColumnType::Float => array
            .as_primitive_opt::<Float64Type>()
            .and_then(|a| serde_json::Number::from_f64(a.value(row)))
            .map(|n| n.to_string()),
        ColumnType::Bool => array.as_boolean_opt().map(|a| a.value(row).to_string()),
        ColumnType::TimestampMs => array
            .as_primitive_opt::<TimestampMillisecondType>()
            .map(|a| a.value(row).to_string()),
        ColumnType::LocalTime => array
            .as_primitive_opt::<TimestampMillisecondType>()
            .and_then(|a| chrono::DateTime::from_timestamp_millis(a.value(row)))
            .map(|t| {
                let local = t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
                serde_json::Value::String(local).to_string()
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;
    use arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};

    #[test]
    fn values_come_back_in_the_api_form() {
        let tz = chrono_tz::Asia::Singapore;
        let s = StringArray::from(vec![Some("a\"b"), None]);
        assert_eq!(
            api_json(ColumnType::String, &s, 0, tz).as_deref(),
            Some(r#""a\"b""#)
        );
        assert_eq!(api_json(ColumnType::String, &s, 1, tz), None);
        assert_eq!(api_json(ColumnType::String, &s, 9, tz), None);
        let j = StringArray::from(vec![r#"{"x":1}"#, "not json"]);
        assert_eq!(
            api_json(ColumnType::Json, &j, 0, tz).as_deref(),
            Some(r#"{"x":1}"#)
        );
        assert_eq!(
            api_json(ColumnType::Json, &j, 1, tz).as_deref(),
            Some(r#""not json""#)
        );
        let i = Int64Array::from(vec![-7]);
        assert_eq!(api_json(ColumnType::Int, &i, 0, tz).as_deref(), Some("-7"));
        let f = Float64Array::from(vec![1.5, f64::NAN]);
        assert_eq!(
            api_json(ColumnType::Float, &f, 0, tz).as_deref(),
            Some("1.5")
        );
        assert_eq!(api_json(ColumnType::Float, &f, 1, tz), None);
        let b = BooleanArray::from(vec![true]);
        assert_eq!(
            api_json(ColumnType::Bool, &b, 0, tz).as_deref(),
            Some("true")
        );
        let t = TimestampMillisecondArray::from(vec![1_709_251_200_000]).with_timezone("UTC");
        assert_eq!(
            api_json(ColumnType::TimestampMs, &t, 0, tz).as_deref(),
            Some("1709251200000")
        );
        assert_eq!(
            api_json(ColumnType::LocalTime, &t, 0, tz).as_deref(),
            Some(r#""2024-03-01 08:00:00""#)
        );
        // A stored type that is not the schema's: nothing inherited.
        assert_eq!(api_json(ColumnType::Int, &s, 0, tz), None);
    }
}
