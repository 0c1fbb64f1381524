//! issue 13: every JSON example of the API document (`tests/fixtures/api-doc/`, repaired
//! only where it was not JSON, see the README there) read by the product's own readers:
//! the client's answer reading (`api::wire`), the page and record readers, the record
//! conversion by the tables' schemas, the report and plan readers, the metrics message
//! reader, the token reader and the push body reader. Values are asserted, not just
//! "it parsed".

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use chrono_tz::Tz;
use serde_json::Value;
use sobot_sync::core::convert::{BatchBuilder, RowMeta, record_key, record_time};
use sobot_sync::core::push::PushKind;
use sobot_sync::core::push::body::{BodyError, decode};
use sobot_sync::core::record::{Page, RawRecord, as_u64, read_page};
use sobot_sync::core::report::period::{DateType, parse_result_date};
use sobot_sync::core::report::response;
use sobot_sync::core::schema::TableSchema;
use sobot_sync::engine::watch_metrics::picture::{Message, parse_message};
use sobot_sync::io::api;
use sobot_sync::io::api::ApiError;

const SG: Tz = chrono_tz::Asia::Singapore;
const MAINCDRS: &str = "/callservice/tm/tm-reports/maincdrs/_search";
const PARTYCDRS: &str = "/callservice/tm/tm-reports/maincdrs/6bf3/partycdrs";
const CDRS: &str = "/callservice/tm/tm-reports/cdrs/_search";
const HISTORIES: &str = "/callservice/tm/tm-reports/agent-histories/_search";
const METRICS: &str = "/callservice/v6/webmsg/monitoring/agents-metrics";
const PLANS: &str = "/callservice/tm/tm-reports/gateway_number/check_plan";
const GATEWAY: &str = "/callservice/tm/tm-reports/gateway-number-table/_search";
const AGENTS: &str = "/callservice/tm/tm-reports/agent-table/_search";
const DEPARTS: &str = "/callservice/tm/tm-reports/depart-table/_search";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/api-doc/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn schema(table: &str) -> TableSchema {
    let path = format!("{}/schemas/{table}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    TableSchema::parse(&text, &path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The body and its page, as the client reads a page answer.
fn page_answer(endpoint: &str, name: &str) -> (String, sobot_sync::core::record::PageIndex) {
    let (body, page) = api::read_page_answer(endpoint, &fixture(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_parts();
    (body, page.unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// A string value of a record, unquoted (as the record holds it: raw JSON text).
fn text_of(r: &RawRecord<'_>, field: &str) -> Option<String> {
    r.get(field)
        .and_then(|v| serde_json::from_str::<String>(v).ok())
}

/// An answer's payload as a `Value`, as `ApiClient::get`/`post` hand it on.
fn payload(endpoint: &str, name: &str) -> Value {
    let data = api::read_answer(endpoint, &fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(data.get()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Converts records into a batch by `table`'s schema; returns the batch and bad values.
fn convert(table: &str, page: &Page<'_>) -> (arrow::array::RecordBatch, usize) {
    let schema = schema(table);
    let mut b = BatchBuilder::new(&schema, SG, page.records.len());
    for r in &page.records {
        b.push(r);
    }
    let bad = b.bad_values;
    let meta = RowMeta {
        run_id: "fixture".into(),
        extracted_at_ms: 0,
        window_start_ms: 0,
        window_end_ms: 0,
    };
    (b.finish(&meta).expect("batch builds"), bad)
}

fn int_column(batch: &arrow::array::RecordBatch, name: &str) -> Vec<Option<i64>> {
    let c = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"));
    let a = c.as_primitive::<Int64Type>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

#[test]
fn main_talk_list_example() {
    let (body, index) = page_answer(MAINCDRS, "maincdrs_search");
    let page = index.into_page(&body);
    assert_eq!((page.total, page.page_size), (Some(12), Some(15)));
    assert_eq!(page.records.len(), 1);
    let talk = &page.records[0];
    let talks = schema("talks");
    assert_eq!(
        record_key(&talks, talk).as_deref(),
        Some("6bf3cbb167a14c7521993665adba687b"),
        "the padded callID is trimmed"
    );
    assert_eq!(record_time(&talks, talk, SG), Some(1_637_068_156_419));
    assert_eq!(
        text_of(talk, "companyId").as_deref(),
        Some(" 825072edbd914f47aa8704de02f1cdb6 ")
    );
    let (batch, bad) = convert("talks", &page);
    assert_eq!(bad, 0, "every value of the example converts");
    assert_eq!(int_column(&batch, "call_result"), [Some(2)]);
    // "100" and "120": numbers sent as strings.
    assert_eq!(int_column(&batch, "duration"), [Some(100)]);
    assert_eq!(int_column(&batch, "total_duration"), [Some(120)]);
}

#[test]
fn sub_talk_list_example() {
    let (body, index) = page_answer(PARTYCDRS, "partycdrs");
    let page = index.into_page(&body);
    assert_eq!(page.total, None, "the example sends no total");
    // The party, and the example's empty `{}` entry.
    assert_eq!(page.records.len(), 2);
    let parties = schema("parties");
    assert_eq!(
        record_key(&parties, &page.records[0]).as_deref(),
        Some("8af8e51f23515fe2a62193e09ceaf0f2")
    );
    assert_eq!(record_key(&parties, &page.records[1]), None);
    let (batch, _) = convert("parties", &page);
    assert_eq!(int_column(&batch, "duration"), [Some(100), None]);
    assert_eq!(int_column(&batch, "call_result"), [Some(2), None]);
}

#[test]
fn main_and_sub_talk_lists_example() {
    let (body, index) = page_answer(CDRS, "cdrs_search");
    let page = index.into_page(&body);
    assert_eq!(page.records.len(), 1);
    let call = &page.records[0];
    assert_eq!(
        record_key(&schema("talks"), call).as_deref(),
        Some("6bf3cbb167a14c7521993665adba687b")
    );
    // The parties travel inside the call, as JSON text.
    let parties = call.get("parties").expect("parties");
    let parties = read_page(parties).expect("parties are a list");
    // The party, and the example's empty `{}` entry.
    assert_eq!(parties.records.len(), 2);
    assert_eq!(
        record_key(&schema("parties"), &parties.records[0]).as_deref(),
        Some("8af8e51f23515fe2a62193e09ceaf0f2")
    );
    assert_eq!(parties.records[0].get("dialType"), Some("1"));
}

#[test]
fn agent_work_status_logs_example() {
    let (body, index) = page_answer(HISTORIES, "agent_histories_search");
    let page = index.into_page(&body);
    assert_eq!((page.total, page.page_size), (Some(12), Some(15)));
    assert_eq!(page.records.len(), 1);
    let h = &page.records[0];
    let histories = schema("agent_histories");
    assert_eq!(
        record_key(&histories, h).as_deref(),
        Some("d097d27d0a89dB58ad7bce250e0f875a2e19")
    );
    // " 2022-07-07 01 : 00 " in Singapore is the example's own startTimeMs.
    assert_eq!(record_time(&histories, h, SG), Some(1_657_126_800_000));
    assert_eq!(
        h.get("startTimeMs").and_then(as_u64),
        Some(1_657_126_800_000)
    );
    let (batch, _) = convert("agent_histories", &page);
    assert_eq!(int_column(&batch, "duration"), [Some(100)]);
    assert_eq!(int_column(&batch, "work_status"), [Some(2)]);
}

/// The full message of the push stream and View Agent Indicator's answer have one shape.
fn assert_full_metrics(name: &str, data: &str) {
    let Ok(Message::Full(picture)) = parse_message(data) else {
        panic!("{name}: not read as a full message");
    };
    assert_eq!(
        picture.company_id.as_deref(),
        Some("6da9c206557b5381a70919907fcf1b02"),
        "{name}"
    );
    assert_eq!(picture.as_of, 433_111_010_800, "{name}");
    assert_eq!(picture.total, Some(12), "{name}");
    assert_eq!(
        picture
            .summary
            .get("outboundCallsCountToday")
            .and_then(Value::as_u64),
        Some(10),
        "{name}"
    );
    // The agent, and the example's empty `{}` entry (no agentUUID) left out.
    assert_eq!((picture.len(), picture.bad_entries), (1, 1), "{name}");
    let agents = picture.records();
    assert_eq!(
        agents[0].get("agentWorkStatus").and_then(Value::as_u64),
        Some(6),
        "{name}"
    );
}

#[test]
fn view_agent_indicator_example_without_the_envelope() {
    // The client hands on the whole body as the payload: the bare form.
    let data = api::read_answer(METRICS, &fixture("metrics_view")).expect("bare metrics answer");
    let value: Value = serde_json::from_str(data.get()).expect("payload");
    assert_eq!(
        value
            .pointer("/agentsMetrics/total")
            .and_then(Value::as_u64),
        Some(12)
    );
    assert_full_metrics("metrics_view", data.get());
}

#[test]
fn push_agent_indicator_examples() {
    let full = fixture("metrics_watch_full");
    assert_full_metrics(
        "metrics_watch_full",
        std::str::from_utf8(&full).expect("utf-8"),
    );
    let inc = fixture("metrics_watch_incremental");
    let Ok(Message::Changes { at, ops }) = parse_message(std::str::from_utf8(&inc).expect("utf-8"))
    else {
        panic!("the incremental message is read as changes");
    };
    assert_eq!(at, Some(433_111_010_800));
    assert_eq!(ops.len(), 2);
    assert_eq!(
        ops[0].get("path").and_then(Value::as_str),
        Some("agentsMetrics/list/agentWorkStatus")
    );
}

#[test]
fn indicator_plan_example_with_code_0() {
    let plans = response::read_plans(payload(PLANS, "check_plan")).expect("plans");
    assert_eq!(plans.len(), 1);
    let plan = &plans[0];
    assert_eq!(
        plan.get("id").and_then(Value::as_str),
        Some("765b29d607da42a3b57a8e4e868a31dc")
    );
    assert_eq!(plan.get("planType").and_then(Value::as_u64), Some(2));
    assert_eq!(
        plan.get("planName").and_then(Value::as_str),
        Some("Default plan")
    );
}

#[test]
fn relay_number_report_example_with_code_0() {
    let page = response::read_page(payload(GATEWAY, "report_gateway_numbers")).expect("page");
    assert_eq!(
        (page.total, page.curr_page, page.page_size),
        (15, Some(1), Some(1))
    );
    assert_eq!(page.rows.len(), 1);
    let row = &page.rows[0];
    let label = row
        .get("result_date")
        .and_then(Value::as_str)
        .expect("result_date");
    assert_eq!(label, "2022-03-17 16 : 30 2022-03-17 17 : 00", "trimmed");
    let period = parse_result_date(label, DateType::HalfHour, SG).expect("the label is a period");
    assert_eq!(
        period.start.timestamp_millis(),
        chrono::DateTime::parse_from_rfc3339("2022-03-17T16:30:00+08:00")
            .expect("time")
            .timestamp_millis()
    );
    assert_eq!(
        row.get("gateway_number").and_then(Value::as_str),
        Some("01088881234")
    );
    let amount = page.amount.expect("amount");
    assert_eq!(amount.get("inbound_calls").and_then(Value::as_u64), Some(0));
}

#[test]
fn agent_report_example_with_code_0() {
    let page = response::read_page(payload(AGENTS, "report_agents")).expect("page");
    assert_eq!((page.total, page.rows.len()), (1, 1));
    let row = &page.rows[0];
    assert_eq!(
        row.get("serviceId").and_then(Value::as_str),
        Some("ddb3063ae7544df3a77b4e3912f1b942")
    );
    let period = parse_result_date(
        row.get("result_date")
            .and_then(Value::as_str)
            .expect("date"),
        DateType::Day,
        SG,
    )
    .expect("a day");
    assert_eq!(
        period.start.timestamp_millis(),
        chrono::DateTime::parse_from_rfc3339("2024-02-21T00:00:00+08:00")
            .expect("time")
            .timestamp_millis()
    );
}

#[test]
fn department_report_example_with_code_0() {
    let page = response::read_page(payload(DEPARTS, "report_departments")).expect("page");
    assert_eq!((page.total, page.rows.len()), (1, 1));
    assert_eq!(
        page.rows[0].get("departId").and_then(Value::as_str),
        Some("73e6f3c96cc74038aea9ff140e68f9b4")
    );
    assert_eq!(
        page.amount.and_then(|a| a
            .get("outbound_customer_answer_calls")
            .and_then(Value::as_u64)),
        Some(0)
    );
}

#[test]
fn token_example_without_the_envelope() {
    let (token, lifetime) = api::read_token_answer(&fixture("token")).expect("token");
    assert_eq!(token.expose(), "<JWT>");
    assert_eq!(lifetime, std::time::Duration::from_secs(7200));
}

#[test]
fn push_examples() {
    // The encrypted form: read as encrypted, and refused without a key.
    assert_eq!(
        decode(PushKind::Talk, &fixture("push_encrypted"), None),
        Err(BodyError::NoKey)
    );
    // The plain form is "the main talk list" record itself: the list example's entry.
    let (body, index) = page_answer(MAINCDRS, "maincdrs_search");
    let page = index.into_page(&body);
    let fields: Vec<String> = page.records[0]
        .fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k.to_string())))
        .collect();
    let record = format!("{{{}}}", fields.join(","));
    let pushed = decode(PushKind::Talk, record.as_bytes(), None).expect("plain push");
    assert_eq!(pushed.key, "6bf3cbb167a14c7521993665adba687b");
    assert_eq!(pushed.company_id, "825072edbd914f47aa8704de02f1cdb6");
}

#[test]
fn every_fixture_is_tested_and_documented() {
    let dir = format!("{}/tests/fixtures/api-doc", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(format!("{dir}/README.md")).expect("README");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 13, "{names:?}");
    let this = include_str!("doc_fixtures.rs");
    for n in names {
        let stem = n.trim_end_matches(".json");
        assert!(readme.contains(&format!("`{n}`")), "{n} is in the README");
        assert!(
            this.contains(&format!("\"{stem}\"")),
            "{n} is read by a test"
        );
    }
}

/// A wrong-shape answer is refused naming fields, and a success code with the document's
/// `status: "string"` is still a success.
#[test]
fn the_examples_envelope_rules_hold() {
    let err = api::read_answer(PLANS, br#"{"foo": "bar"}"#).err();
    assert!(
        matches!(&err, Some(ApiError::Decode { endpoint, detail }) if endpoint == PLANS && detail.contains("foo (a string)") && !detail.contains("bar")),
        "{err:?}"
    );
}
