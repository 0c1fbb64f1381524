//! deploy/: every YAML file parses; the Kubernetes objects reference each other by the
//! right names, probe `/healthz` on the port `SOBOT_SYNC_HTTP_ADDR` opens and mount the
//! repository's own definitions; the Dockerfile's build stage runs exactly what CI runs;
//! compose and systemd are wired as docs/deployment.md says. (No Docker engine or cluster here:
//! the image is not built and nothing is applied.)

use serde::Deserialize;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn deploy() -> PathBuf {
    Path::new(REPO).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn files_with(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files_with(&path, exts, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
        {
            out.push(path);
        }
    }
    out.sort();
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map_or(&[], |s| s.as_slice())
}

/// The port of a `HOST:PORT` address.
fn port_of(addr: &str) -> u64 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} is not HOST:PORT"))
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut files = Vec::new();
    files_with(&deploy(), &["yaml", "yml"], &mut files);
    assert!(files.len() >= 10, "YAML files found: {files:?}");
    for f in &files {
        let docs = documents(f);
        assert!(!docs.is_empty(), "{}: no document", f.display());
        for d in &docs {
            assert!(
                d.is_mapping(),
                "{}: a document is not a mapping",
                f.display()
            );
        }
    }
}

/// Every Kubernetes object of deploy/k8s, with the file it came from.
fn k8s_objects() -> Vec<(String, Value)> {
    let mut files = Vec::new();
    files_with(&deploy().join("k8s"), &["yaml"], &mut files);
    files
        .iter()
        .flat_map(|f| {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            documents(f).into_iter().map(move |d| (name.clone(), d))
        })
        .collect()
}

fn named<'a>(objects: &'a [(String, Value)], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn one<'a>(objects: &'a [(String, Value)], kind: &str) -> &'a Value {
    let all: Vec<_> = objects.iter().filter(|(_, o)| o["kind"] == kind).collect();
    assert_eq!(all.len(), 1, "one {kind} expected");
    &all[0].1
}

/// Checks one pod template: references, security, resources; returns its container.
fn check_pod(what: &str, pod: &Value, objects: &[(String, Value)]) -> Value {
    let spec = &pod["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{what}");
    let volumes: BTreeMap<&str, &Value> = seq(&spec["volumes"])
        .iter()
        .map(|v| (s(&v["name"]), v))
        .collect();
    let containers = seq(&spec["containers"]);
    assert_eq!(containers.len(), 1, "{what}: one container");
    let c = &containers[0];
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"], true,
        "{what}"
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"], false,
        "{what}"
    );
    assert!(
        seq(&c["securityContext"]["capabilities"]["drop"]).contains(&Value::from("ALL")),
        "{what}: capabilities dropped"
    );
    assert!(
        c["resources"]["requests"]["memory"].is_string(),
        "{what}: resources"
    );
    assert!(
        c["resources"]["limits"]["memory"].is_string(),
        "{what}: resources"
    );
    for env in seq(&c["envFrom"]) {
        if let Some(r) = env.get("configMapRef") {
            assert!(
                named(objects, "ConfigMap", s(&r["name"])).is_some(),
                "{what}: {r:?}"
            );
        } else if let Some(r) = env.get("secretRef") {
            assert!(
                named(objects, "Secret", s(&r["name"])).is_some(),
                "{what}: {r:?}"
            );
        } else {
            panic!("{what}: envFrom {env:?}");
        }
    }
    for m in seq(&c["volumeMounts"]) {
        assert!(volumes.contains_key(s(&m["name"])), "{what}: mount {m:?}");
    }
    for v in volumes.values() {
        let mut sources: Vec<&Value> = vec![];
        if let Some(cm) = v.get("configMap") {
            sources.push(cm);
        }
        for src in seq(&v["projected"]["sources"]) {
            sources.push(&src["configMap"]);
        }
        assert!(!sources.is_empty(), "{what}: volume {v:?}");
        for cm in sources {
            let obj = named(objects, "ConfigMap", s(&cm["name"]))
                .unwrap_or_else(|| panic!("{what}: no ConfigMap {:?}", cm["name"]));
            for item in seq(&cm["items"]) {
                assert!(
                    obj["data"].get(s(&item["key"])).is_some(),
                    "{what}: key {:?} not in {:?}",
                    item["key"],
                    cm["name"]
                );
            }
        }
    }
    c.clone()
}

/// The files a pod sees under a mount: `path -> content`.
fn mounted_files(
    pod: &Value,
    container: &Value,
    mount: &str,
    objects: &[(String, Value)],
) -> BTreeMap<String, String> {
    let m = seq(&container["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == mount)
        .unwrap_or_else(|| panic!("nothing mounted at {mount}"));
    let v = seq(&pod["spec"]["volumes"])
        .iter()
        .find(|v| v["name"] == m["name"])
        .expect("mounted volume");
    let mut sources: Vec<&Value> = vec![];
    if let Some(cm) = v.get("configMap") {
        sources.push(cm);
    }
    for src in seq(&v["projected"]["sources"]) {
        sources.push(&src["configMap"]);
    }
    let mut files = BTreeMap::new();
    for cm in sources {
        let data = &named(objects, "ConfigMap", s(&cm["name"])).expect("ConfigMap")["data"];
        let items = seq(&cm["items"]);
        if items.is_empty() {
            for (k, v) in data.as_mapping().expect("data") {
                files.insert(s(k).to_string(), s(v).to_string());
            }
        } else {
            for item in items {
                files.insert(
                    s(&item["path"]).to_string(),
                    s(&data[s(&item["key"])]).to_string(),
                );
            }
        }
    }
    files
}

/// The repository's files under `dir`, relative paths -> content.
fn repo_files(dir: &str) -> BTreeMap<String, String> {
    let root = Path::new(REPO).join(dir);
    let mut files = Vec::new();
    files_with(&root, &["toml"], &mut files);
    files
        .iter()
        .map(|f| {
            let rel = f
                .strip_prefix(&root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            (rel, read(f))
        })
        .collect()
}

#[test]
fn k8s_objects_fit_together() {
    let objects = k8s_objects();
    let kinds: BTreeSet<&str> = objects.iter().map(|(_, o)| s(&o["kind"])).collect();
    for kind in [
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "CronJob",
        "Job",
        "Kustomization",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/k8s: {kinds:?}");
    }
    let settings = &named(&objects, "ConfigMap", "sobot-sync-settings").expect("settings")["data"];
    let http_port = port_of(s(&settings["SOBOT_SYNC_HTTP_ADDR"]));
    let secret = one(&objects, "Secret");
    for key in ["SOBOT_APP_ID", "SOBOT_APP_SECRET"] {
        assert!(
            secret["stringData"].get(key).is_some(),
            "Secret lacks {key}"
        );
    }

    // The daemon: probes on /healthz at the port the settings open.
    let deployment = one(&objects, "Deployment");
    let pod = &deployment["spec"]["template"];
    let c = check_pod("Deployment", pod, &objects);
    assert_eq!(seq(&c["args"]), [Value::from("daemon")]);
    let port_number = |p: &Value| -> u64 {
        match p {
            Value::Number(n) => n.as_u64().expect("port"),
            Value::String(name) => seq(&c["ports"])
                .iter()
                .find(|q| q["name"] == name.as_str())
                .and_then(|q| q["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no container port named {name}")),
            other => panic!("port {other:?}"),
        }
    };
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(port_number(&get["port"]), http_port, "{probe} port");
    }
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    for (k, v) in selector.as_mapping().expect("selector") {
        assert_eq!(
            &pod["metadata"]["labels"][s(k)],
            v,
            "template labels match the selector"
        );
    }
    let service = one(&objects, "Service");
    assert_eq!(
        &service["spec"]["selector"], selector,
        "Service selects the daemon"
    );
    assert_eq!(
        port_number(&seq(&service["spec"]["ports"])[0]["targetPort"]),
        http_port
    );
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/path"],
        "/metrics"
    );

    // The definitions the pods mount are the repository's, where the settings look.
    assert_eq!(
        mounted_files(pod, &c, s(&settings["SOBOT_SYNC_PIPELINES"]), &objects),
        repo_files("pipelines"),
        "deploy/k8s/definitions.yaml differs from pipelines/: run deploy/k8s/generate-definitions.sh"
    );
    assert_eq!(
        mounted_files(pod, &c, s(&settings["SOBOT_SYNC_SCHEMAS"]), &objects),
        repo_files("schemas"),
        "deploy/k8s/definitions.yaml or the schemas volume differs from schemas/: run deploy/k8s/generate-definitions.sh and list new indicator files in the volumes"
    );

    // The CronJob alternative runs `run`, never two at once.
    let cron = one(&objects, "CronJob");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let c = check_pod(
        "CronJob",
        &cron["spec"]["jobTemplate"]["spec"]["template"],
        &objects,
    );
    assert_eq!(seq(&c["args"]), [Value::from("run")]);

    // The indexed backfill Job: N pods, N shards, the tenant's rate cap shared.
    let job = one(&objects, "Job");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let c = check_pod("Job", &job["spec"]["template"], &objects);
    let args: Vec<&str> = seq(&c["args"]).iter().map(s).collect();
    assert_eq!(args.first(), Some(&"backfill"), "{args:?}");
    let shards: u64 = args
        .iter()
        .position(|a| *a == "--shards")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("Job args lack --shards N: {args:?}"));
    assert_eq!(job["spec"]["completions"].as_u64(), Some(shards));
    assert_eq!(job["spec"]["parallelism"].as_u64(), Some(shards));
    let env: BTreeMap<&str, &str> = seq(&c["env"])
        .iter()
        .map(|e| (s(&e["name"]), s(&e["value"])))
        .collect();
    let rps: u64 = env
        .get("SOBOT_MAX_RPS")
        .and_then(|v| v.parse().ok())
        .expect("SOBOT_MAX_RPS per pod");
    assert!(
        rps >= 1 && rps * shards <= 10,
        "{rps} rps x {shards} pods exceeds the default tenant cap"
    );

    // The kustomization lists every object file but the Job, which is applied on its own.
    let kust = one(&objects, "Kustomization");
    let listed: BTreeSet<&str> = seq(&kust["resources"]).iter().map(s).collect();
    let files: BTreeSet<&str> = objects
        .iter()
        .filter(|(_, o)| o["kind"] != "Kustomization" && o["kind"] != "Job")
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(listed, files);
    assert!(!listed.contains("backfill-job.yaml"));
}

/// The settings the manifests give are valid settings of this binary, and the mounted
/// definitions load as a catalog.
#[test]
fn k8s_settings_and_definitions_load() {
    let objects = k8s_objects();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for name in ["sobot-sync-settings"] {
        for (k, v) in named(&objects, "ConfigMap", name).expect("settings")["data"]
            .as_mapping()
            .expect("data")
        {
            env.insert(s(k).into(), s(v).into());
        }
    }
    for (k, v) in one(&objects, "Secret")["stringData"]
        .as_mapping()
        .expect("stringData")
    {
        env.insert(s(k).into(), s(v).into());
    }
    // Materialise the mounts in a temporary folder and point the settings at it.
    let dir = tempfile::tempdir().expect("temp dir");
    let pod = &one(&objects, "Deployment")["spec"]["template"];
    let c = check_pod("Deployment", pod, &objects);
    for key in ["SOBOT_SYNC_PIPELINES", "SOBOT_SYNC_SCHEMAS"] {
        let folder = dir.path().join(key);
        for (rel, text) in mounted_files(pod, &c, &env[key], &objects) {
            let path = folder.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        env.insert(key.into(), folder.display().to_string());
    }
    let settings = sobot_sync::app::settings::Settings::from_sources(None, &env)
        .unwrap_or_else(|e| panic!("the manifests' settings: {e}"));
    let catalog = sobot_sync::app::setup::load_catalog(&settings)
        .unwrap_or_else(|e| panic!("the mounted definitions: {e}"));
    assert!(
        catalog.source.contains(&dir.path().display().to_string()),
        "{}",
        catalog.source
    );
    assert!(catalog.get("talks").is_some());
}

/// The shell commands of the Dockerfile's first (build) stage, `RUN` lines joined.
fn build_stage_runs(dockerfile: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in dockerfile.lines() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_suffix('\\') {
            current.push_str(rest.trim());
            current.push(' ');
            continue;
        }
        current.push_str(line);
        lines.push(std::mem::take(&mut current).trim().to_string());
    }
    let mut stages = 0;
    let mut runs = Vec::new();
    for l in lines {
        let upper = l.to_ascii_uppercase();
        if upper.starts_with("FROM ") {
            stages += 1;
        } else if stages == 1 && upper.starts_with("RUN ") {
            for cmd in l[4..].split("&&") {
                runs.push(cmd.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
    }
    runs
}

/// The commands of the `.ci/run` step whose heading names deploy/Dockerfile.
fn ci_release_commands(ci: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in ci.lines().map(str::trim) {
        if line.starts_with("echo \"==") {
            inside = line.contains("deploy/Dockerfile");
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            out.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

#[test]
fn dockerfile_build_stage_runs_what_ci_runs() {
    let dockerfile = read(&deploy().join("Dockerfile"));
    let ci = read(&Path::new(REPO).join(".ci/run"));
    let docker = build_stage_runs(&dockerfile);
    let ci_cmds = ci_release_commands(&ci);
    assert!(!docker.is_empty(), "no RUN in the build stage");
    assert_eq!(
        docker, ci_cmds,
        "deploy/Dockerfile's build stage and .ci/run's release step differ"
    );
    assert!(
        docker
            .iter()
            .any(|c| c.starts_with("cargo build --release"))
    );
    // Every command of the step is run by CI as written (not commented out, not skipped).
    for cmd in &ci_cmds {
        assert!(ci.lines().any(|l| l.trim() == cmd), "{cmd}");
    }

    // The builder's Rust is at least the crate's rust-version.
    let cargo: toml::Table = read(&Path::new(REPO).join("Cargo.toml"))
        .parse()
        .expect("Cargo.toml");
    let msrv = s_toml(&cargo["package"]["rust-version"]);
    let arg = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION=");
    let version =
        |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().expect("version")).collect() };
    assert!(
        version(arg) >= version(msrv),
        "rust {arg} < rust-version {msrv}"
    );
    assert!(
        dockerfile.contains("FROM rust:${RUST_VERSION}"),
        "builder on the official rust image"
    );

    // The runtime stage: non-root, definitions copied where the settings point, the
    // binary as entrypoint and the daemon by default.
    let runtime = dockerfile.rsplit_once("\nFROM ").expect("a second stage").1;
    let user = runtime
        .lines()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("USER in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("numeric USER");
    assert_ne!(uid, 0, "runs as root");
    for (dir, var) in [
        ("pipelines", "SOBOT_SYNC_PIPELINES"),
        ("schemas", "SOBOT_SYNC_SCHEMAS"),
    ] {
        let copy = runtime
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("COPY {dir} ")))
            .unwrap_or_else(|| panic!("{dir}/ is not copied in"));
        assert!(
            runtime.contains(&format!("{var}={copy}")),
            "{var} points at {copy}"
        );
    }
    assert!(runtime.contains("\nENTRYPOINT [\"sobot-sync\"]"));
    assert!(runtime.contains("\nCMD [\"daemon\"]"));
}

fn s_toml(v: &toml::Value) -> &str {
    v.as_str().expect("a string")
}

#[test]
fn compose_runs_the_daemon_on_minio() {
    let doc = &documents(&deploy().join("docker-compose.yml"))[0];
    let services = &doc["services"];
    for name in ["minio", "create-bucket", "sobot-sync"] {
        assert!(services.get(name).is_some(), "no service {name}");
    }
    let app = &services["sobot-sync"];
    let env = &app["environment"];
    let warehouse = s(&env["SOBOT_SYNC_WAREHOUSE"]);
    let bucket = warehouse
        .strip_prefix("s3://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("SOBOT_SYNC_WAREHOUSE {warehouse:?} is not s3://"));
    let mb = seq(&services["create-bucket"]["command"])
        .iter()
        .map(s)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        mb.contains(&format!("mc mb --ignore-existing local/{bucket}")),
        "{mb}"
    );
    assert_eq!(env["AWS_ENDPOINT_URL"], "http://minio:9000");
    assert_eq!(env["AWS_ALLOW_HTTP"], "true");
    assert_eq!(
        app["depends_on"]["create-bucket"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(app["build"]["dockerfile"], "deploy/Dockerfile");
    let port = port_of(s(&env["SOBOT_SYNC_HTTP_ADDR"]));
    assert!(seq(&app["ports"]).contains(&Value::from(format!("{port}:{port}"))));
    let check = seq(&app["healthcheck"]["test"])
        .iter()
        .map(s)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        check.contains(&format!("/dev/tcp/127.0.0.1/{port}")) && check.contains("GET /healthz"),
        "{check}"
    );
    // Credentials come from deploy/.env, whose example names every variable used.
    let text = read(&deploy().join("docker-compose.yml"));
    let example = read(&deploy().join("env.example"));
    let defined: BTreeSet<&str> = example
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| !k.starts_with('#'))
        .collect();
    let used: BTreeSet<&str> = text
        .split("${")
        .skip(1)
        .filter_map(|r| r.split([':', '}']).next())
        .collect();
    assert!(!used.is_empty());
    assert_eq!(
        used, defined,
        "deploy/env.example and the compose file's variables"
    );
    for secret in ["SOBOT_APP_SECRET", "AWS_SECRET_ACCESS_KEY"] {
        let value = s(&env[secret]);
        assert!(
            value.starts_with("${"),
            "{secret} is written into the compose file"
        );
    }
}

#[test]
fn systemd_unit_is_hardened_and_its_env_file_loads() {
    let unit = read(&deploy().join("systemd/sobot-sync.service"));
    let keys: BTreeMap<&str, Vec<&str>> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .fold(BTreeMap::new(), |mut m, (k, v)| {
            m.entry(k).or_insert_with(Vec::new).push(v);
            m
        });
    let one = |k: &str| {
        keys.get(k)
            .and_then(|v| v.last().copied())
            .unwrap_or_else(|| panic!("no {k}="))
    };
    assert!(one("ExecStart").ends_with("/sobot-sync daemon"));
    for (k, v) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("StateDirectory", "sobot-sync"),
        ("WorkingDirectory", "/var/lib/sobot-sync"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    assert_eq!(one("EnvironmentFile"), "/etc/sobot-sync/sobot-sync.env");

    // The example env file is valid settings (placeholders for the credentials).
    let example = read(&deploy().join("systemd/sobot-sync.env.example"));
    let env: BTreeMap<String, String> = example
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{l:?} is not KEY=VALUE"));
            (k.to_string(), v.to_string())
        })
        .collect();
    let warehouse = &env["SOBOT_SYNC_WAREHOUSE"];
    assert!(
        warehouse.starts_with(&format!("file://{}", one("WorkingDirectory"))),
        "{warehouse}"
    );
    sobot_sync::app::settings::Settings::from_sources(None, &env)
        .unwrap_or_else(|e| panic!("deploy/systemd/sobot-sync.env.example: {e}"));
}
