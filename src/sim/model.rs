//! The records as the API serves them. Field names and value shapes follow the API
//! document, including its quirks (numeric strings, `""` for a missing time), so clients
//! meet the real wire format.

use serde::{Serialize, Serializer};

/// A talk's answer or bridge time. Unanswered calls come in every shape the real API
/// uses for "no time": an empty string, null, or no field at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MaybeTime {
    Ms(i64),
    Empty,
    Null,
    Absent,
}

impl MaybeTime {
    pub(crate) fn is_absent(&self) -> bool {
        matches!(self, MaybeTime::Absent)
    }
}

impl Serialize for MaybeTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaybeTime::Ms(v) => s.serialize_i64(*v),
            MaybeTime::Empty => s.serialize_str(""),
            MaybeTime::Null | MaybeTime::Absent => s.serialize_none(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttachedData {
    pub customer_name: &'static str,
    pub order_no: String,
}

/// One call: "Main Customer Talk List".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Talk {
    #[serde(rename = "callID")]
    pub call_id: String,
    pub call_type: u8,
    pub screen_number: String,
    pub customer_number: String,
    pub area_code: &'static str,
    pub area_province: &'static str,
    pub area_city: &'static str,
    pub gateway_number: &'static str,
    pub start_time: i64,
    pub alert_time: i64,
    #[serde(skip_serializing_if = "MaybeTime::is_absent")]
    pub answer_time: MaybeTime,
    #[serde(skip_serializing_if = "MaybeTime::is_absent")]
    pub bridge_time: MaybeTime,
    pub end_time: i64,
    pub alert_duration: i64,
    pub duration: String,
    pub total_duration: String,
    pub call_result: u8,
    pub hangup_disposition: u8,
    pub record_url: String,
    pub platform_id: String,
    pub company_id: String,
    pub fee_seconds: i64,
    pub fee_minutes: i64,
    pub first_route_id: &'static str,
    pub first_route_name: &'static str,
    #[serde(rename = "firstAgentUUID")]
    pub first_agent_uuid: String,
    #[serde(rename = "firstAgentID")]
    pub first_agent_id: String,
    pub first_agent_name: String,
    #[serde(rename = "lastAgentUUID")]
    pub last_agent_uuid: String,
    pub last_agent_name: String,
    #[serde(rename = "lastAgentID")]
    pub last_agent_id: String,
    #[serde(rename = "lastAgentDN")]
    pub last_agent_dn: String,
    pub last_agent_phone_type: u8,
    pub transfer_count: u32,
    pub consult_count: u32,
    pub source_type: u8,
    pub source_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_data: Option<AttachedData>,
    /// A field no schema knows, so clients' catch-all column gets exercised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_tag: Option<&'static str>,
}

impl Talk {
    /// The talk as served with `hideNumber` 1.
    pub(crate) fn masked(&self) -> Talk {
        Talk {
            screen_number: mask_number(&self.screen_number),
            customer_number: mask_number(&self.customer_number),
            ..self.clone()
        }
    }

    /// issue 15: billing not settled yet (the talk carries no `fee` of its own).
    pub(crate) fn unsettle(&mut self) {
        self.fee_seconds = 0;
        self.fee_minutes = 0;
    }
}

/// `18618256606` -> `186****6606`, as the API masks customer numbers.
pub(crate) fn mask_number(n: &str) -> String {
    if n.len() < 8 || !n.is_ascii() {
        return "*".repeat(n.len());
    }
    format!("{}****{}", &n[..3], &n[n.len() - 4..])
}

/// One agent leg of a call: "Sub Agent Talk List".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Party {
    #[serde(rename = "callID")]
    pub call_id: String,
    pub call_type: u8,
    pub party_id: String,
    pub dial_type: u8,
    pub agent_type: u8,
    pub agent_role: u8,
    pub phone_type: u8,
    #[serde(rename = "agentUUID")]
    pub agent_uuid: String,
    #[serde(rename = "agentID")]
    pub agent_id: String,
    pub agent_name: String,
    #[serde(rename = "agentDN")]
    pub agent_dn: String,
    #[serde(rename = "DNIS")]
    pub dnis: String,
    pub gateway_number: &'static str,
    pub start_time: i64,
    pub alert_time: i64,
    pub answer_time: Option<i64>,
    pub bridge_time: Option<i64>,
    pub end_time: i64,
    pub duration: i64,
    pub call_result: u8,
    pub hangup_disposition: u8,
    pub platform_id: String,
    pub company_id: String,
    pub department_id: String,
    pub fee: f64,
    pub fee_seconds: i64,
    pub fee_minutes: i64,
    pub last_agent_flag: bool,
    pub belong_agent_flag: bool,
}

impl Party {
    /// issue 15: billing not settled yet.
    pub(crate) fn unsettle(&mut self) {
        self.fee = 0.0;
        self.fee_seconds = 0;
        self.fee_minutes = 0;
    }
}

/// A stable member of staff.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Agent {
    pub uuid: String,
    pub id: String,
    pub name: String,
    pub dn: String,
    pub phone_type: u8,
    pub department_id: String,
}

/// One status interval of one agent, kept zone-free: its local strings depend on the
/// request's `timezoneid`, so they are produced when served (see [`AgentHistoryJson`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentHistory {
    pub id: String,
    pub agent: usize,
    pub start_ms: i64,
    pub end_ms: i64,
    pub duration: String,
    pub login_status: u8,
    pub no_ready_status: u8,
    pub work_status: u8,
    pub late_u: f64,
}

/// An agent-history record as served: "Query Agent Work Status Logs" `pageData` items.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentHistoryJson<'a> {
    pub id: &'a str,
    pub company_id: &'a str,
    #[serde(rename = "agentUUID")]
    pub agent_uuid: &'a str,
    #[serde(rename = "agentID")]
    pub agent_id: &'a str,
    pub agent_name: &'a str,
    pub agent_type: u8,
    #[serde(rename = "thisDN")]
    pub this_dn: &'a str,
    pub start_time: String,
    pub end_time: String,
    pub start_time_ms: i64,
    pub end_time_ms: i64,
    pub duration: &'a str,
    pub login_status: u8,
    pub no_ready_status: u8,
    pub work_status: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_api_document() {
        assert_eq!(mask_number("18618256606"), "186****6606");
        assert_eq!(mask_number("123"), "***");
    }

    #[test]
    fn maybe_time_shapes() {
        let v = serde_json::to_string(&[MaybeTime::Ms(5), MaybeTime::Empty, MaybeTime::Null])
            .unwrap_or_default();
        assert_eq!(v, r#"[5,"",null]"#);
    }
}
