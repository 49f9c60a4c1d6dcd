//! `deploy/`: the Kubernetes manifests validate against the Kubernetes
//! schemas (kubernetes-validate from PyPI, offline, strict), describe the
//! cluster the roles need, and use only settings the binary has; the
//! container file is multi-stage and runs the one binary as a non-root user.
//! (No container registry is reachable here, so the image itself is not built.)

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{BIN, python};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("kubernetes"))
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn validate(python: &Path, files: &[PathBuf]) -> (bool, String) {
    let output = Command::new(python)
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Every document of the manifests, as JSON.
fn documents(python: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]\n\
                  print(json.dumps(docs))";
    let output = Command::new(python).arg("-c").arg(script).args(manifests()).output().expect("read the YAML");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn role_of(workload: &Value) -> String {
    let env = workload["spec"]["template"]["spec"]["containers"][0]["env"].as_array().expect("env");
    let role = env.iter().find(|e| e["name"] == "SPANLAKE_ROLES").expect("SPANLAKE_ROLES");
    role["value"].as_str().unwrap().to_owned()
}

#[test]
fn the_kubernetes_manifests_validate_and_describe_the_cluster() {
    let Some(python) = python() else { return };
    let (valid, report) = validate(&python, &manifests());
    assert!(valid, "{report}");

    // The validator can fail: a manifest with a wrong type and an unknown field.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let collector = std::fs::read_to_string(deploy_dir().join("kubernetes/collector.yaml")).unwrap();
    std::fs::write(&broken, collector.replacen("replicas: 2", "replicas: two\n  surge: 1", 1)).unwrap();
    let (valid, report) = validate(&python, &[broken]);
    assert!(!valid, "a broken manifest passed: {report}");

    let docs = documents(&python);
    let collectors = find(&docs, "StatefulSet", "spanlake-collector");
    assert_eq!(role_of(collectors), "collector");
    assert!(collectors["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "wal", "the WAL on a volume");
    let query = find(&docs, "Deployment", "spanlake-query");
    assert_eq!(role_of(query), "query");
    let compactor = find(&docs, "Deployment", "spanlake-compactor");
    assert_eq!(role_of(compactor), "compactor");
    assert_eq!(compactor["spec"]["replicas"], 2, "a standby for the lease");
    for headless in ["spanlake-collector-peers", "spanlake-query-peers"] {
        assert_eq!(find(&docs, "Service", headless)["spec"]["clusterIP"], "None", "{headless} is headless");
    }
    let config = &find(&docs, "ConfigMap", "spanlake")["data"];
    assert!(config["SPANLAKE_STORAGE"].as_str().unwrap().starts_with("s3://"));
    assert!(config["SPANLAKE_COLLECTORS"].as_str().unwrap().contains("spanlake-collector-peers"));
    assert!(config["SPANLAKE_QUERY_WORKERS"].as_str().unwrap().contains("spanlake-query-peers"));
}

/// Every `SPANLAKE_*` setting the deployment files use is one `spanlake
/// serve` reads (clap lists each variable in `--help`).
#[test]
fn the_deployment_uses_only_settings_the_binary_has() {
    let help = Command::new(BIN).args(["serve", "--help"]).output().expect("spanlake serve --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut files = manifests();
    files.push(deploy_dir().join("Dockerfile"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("SPANLAKE_") {
            let name: String =
                text[at..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            assert!(
                help.contains(&format!("[env: {name}=")),
                "{name} in {} is no setting of spanlake serve",
                file.display()
            );
        }
    }
}

#[test]
fn the_container_file_is_multi_stage_and_runs_the_binary_unprivileged() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let instructions: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let froms: Vec<&&str> = instructions.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2 && froms[0].contains(" AS "), "a build stage and a run stage: {froms:?}");
    let user = instructions.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("a USER");
    assert!(!user.starts_with('0') && !user.starts_with("root"), "runs as {user}");
    let entry = instructions.iter().find_map(|l| l.strip_prefix("ENTRYPOINT ")).expect("an ENTRYPOINT");
    assert!(entry.contains("spanlake"), "{entry}");
    let copied = instructions.iter().filter(|l| l.starts_with("COPY --from=")).count();
    assert_eq!(copied, 1, "the run stage takes the binary alone");
}
