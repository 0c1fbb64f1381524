//! Indicator catalogues follow SOBOT_SYNC_SCHEMAS.

use super::*;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}

/// Indicator catalogues follow SOBOT_SYNC_SCHEMAS: in a copied schemas folder, an added
/// indicator becomes a column of its kind's type, and an indicator whose kind is changed
/// is loaded with the new type (values as the simulator serves them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indicator_catalogues_come_from_the_schemas_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let schemas = dir.path().join("schemas");
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"),
        &schemas,
    );
    let file = schemas.join("indicators/gateway_numbers.toml");
    let shipped = std::fs::read_to_string(&file).expect("read catalogue");
    // inbound_calls: a counter in the shipped file, a ratio here.
    let marker = "name = \"inbound_calls\"\n";
    let at = shipped.find(marker).expect("inbound_calls is listed") + marker.len();
    let (head, tail) = shipped.split_at(at);
    let retyped = format!(
        "{head}{}",
        tail.replacen("kind = \"counter\"", "kind = \"ratio\"", 1)
    );
    assert_ne!(retyped, shipped);
    let added = format!(
        "{retyped}\n[[indicators]]\nname = \"inbound_brand_new\"\nlabel = \"New\"\nkind = \"duration\"\ndirection = \"inbound\"\n"
    );
    std::fs::write(&file, &added).expect("write catalogue");

    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-02T02:00:00+08:00");
    let mut rig = Rig::new(
        SimConfig {
            now: Some(sim_now(now)),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        start,
    )
    .await;
    rig.set("SOBOT_SYNC_SCHEMAS", &schemas.display().to_string());
    let engine = rig.engine(now);
    let p = pipeline(&engine, "report_gateway_numbers");
    let ty = |p: &Pipeline, name: &str| {
        p.schema
            .arrow
            .field_with_name(name)
            .map(|f| f.data_type().clone())
            .ok()
    };
    assert_eq!(ty(&p, "inbound_brand_new"), Some(DataType::Int64));
    assert_eq!(ty(&p, "inbound_calls"), Some(DataType::Float64));
    let def = p.report.as_deref().expect("report");
    assert!(
        def.spec
            .indicators
            .iter()
            .any(|i| i.name == "inbound_brand_new")
    );
    // The shipped catalogues of the other families are untouched.
    assert_eq!(
        ty(
            &pipeline(&engine, "report_agents_inbound"),
            "inbound_brand_new"
        ),
        None
    );

    // Without the added indicator (the simulator does not know it), the retyped one is
    // loaded as a float, equal to what the API serves.
    std::fs::write(&file, &retyped).expect("write catalogue");
    let engine = rig.engine(now);
    let p = pipeline(&engine, "report_gateway_numbers");
    assert_eq!(ty(&p, "inbound_brand_new"), None);
    let report = engine
        .run(&p, sobot_sync::engine::run::Mode::Incremental)
        .await
        .expect("run");
    assert_eq!(report.windows, 1);
    let table = table::read(&engine, &p.table).await;
    assert!(table.rows() > 0);
    assert_report_table(
        &p,
        &table,
        &truth(&rig, &p, start, t("2024-03-02T00:00:00+08:00"), now),
    );
}
