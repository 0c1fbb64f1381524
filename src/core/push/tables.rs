//! The four push tables' schemas: `schemas/<table>.toml` from `SOBOT_SYNC_SCHEMAS` when
//! that folder holds the file, else the copy built into the binary (like the
//! pipelines' schemas, so `receive` works from any directory).

use crate::core::push::PushKind;
use crate::core::schema::TableSchema;
use std::collections::HashMap;
use std::path::Path;

const EMBEDDED: &[(&str, &str)] = &[
    (
        "push_talks",
        include_str!("../../../schemas/push_talks.toml"),
    ),
    (
        "push_parties",
        include_str!("../../../schemas/push_parties.toml"),
    ),
    (
        "agent_status_events",
        include_str!("../../../schemas/agent_status_events.toml"),
    ),
    (
        "call_events",
        include_str!("../../../schemas/call_events.toml"),
    ),
];

/// Loads the schema of every push table.
pub fn load(schemas_dir: &Path) -> Result<HashMap<PushKind, TableSchema>, String> {
    let mut out = HashMap::new();
    for kind in PushKind::ALL {
        let table = kind.table();
        let file = schemas_dir.join(format!("{table}.toml"));
        let (text, origin) = if file.exists() {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("schema {}: cannot read: {e}", file.display()))?;
            (text, file.display().to_string())
        } else {
            let text = EMBEDDED
                .iter()
                .find(|(n, _)| *n == table)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| format!("no built-in schema for {table}"))?;
            (text, format!("(built-in) {table}.toml"))
        };
        let schema = TableSchema::parse(&text, &origin).map_err(|e| e.to_string())?;
        if schema.table != table {
            return Err(format!("schema {origin}: table must be {table}"));
        }
        out.insert(kind, schema);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn built_in_schemas_parse() {
        let s = super::load(std::path::Path::new("/nonexistent")).unwrap();
        assert_eq!(s.len(), 4);
    }
}
