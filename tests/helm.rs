//! The Helm chart in deploy/chart/ as the real `helm` renders it: with its defaults it
//! installs exactly what deploy/base and deploy/monitoring do (one truth, checked field
//! by field), every combination of its options lints strictly, renders objects that
//! Kubernetes' schemas and KEDA's CRDs accept and a config and ScaledObjects the scaler
//! accepts, its schema refuses wrong values, and it packages at the crate's version.
//!
//! `helm` comes from `$HELM`, else the PATH (scripts/test installs it from the Go
//! module proxy).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

mod cli;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/chart/keda-llm-scaler");
/// A cluster version for `helm template` (Helm's built-in default is older than the
/// chart's kubeVersion); `helm install` reads the cluster's own.
const KUBE_VERSION: &str = "1.31.0";
/// The labels Helm's conventions add and kustomize's base does not have.
const HELM_LABELS: [&str; 4] = [
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
];

fn run(command: &mut Command) -> (bool, String, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn helm(args: &[&str]) -> (bool, String, String) {
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    run(Command::new(helm).args(args))
}

/// `helm template` of the chart as release `keda-llm-scaler` in namespace
/// `keda-llm-scaler`, with a values file.
fn template(values: &Path) -> String {
    let (ok, out, err) = helm(&[
        "template",
        "keda-llm-scaler",
        CHART,
        "--namespace",
        "keda-llm-scaler",
        "--kube-version",
        KUBE_VERSION,
        "--values",
        values.to_str().unwrap(),
    ]);
    assert!(ok, "helm template -f {}: {err}", values.display());
    out
}

fn kustomize(dir: &str) -> String {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let (ok, out, err) = run(Command::new(kubectl).args(["kustomize", &format!("{ROOT}/{dir}")]));
    assert!(ok, "kubectl kustomize {dir}: {err}");
    out
}

fn objects(yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(yaml).unwrap();
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// An object as kustomize would write it: Helm's own labels gone, and a ConfigMap's
/// config file parsed, so that comments and key order do not count.
fn normalized(mut object: Value) -> Value {
    for labels in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(Value::Object(labels)) = object.pointer_mut(labels) {
            for label in HELM_LABELS {
                labels.remove(label);
            }
        }
    }
    if let Some(Value::String(text)) = object.pointer("/data/config.yaml") {
        let parsed: Value = serde_saphyr::from_str(text).unwrap();
        object["data"]["config.yaml"] = as_floats(parsed);
    }
    object
}

/// Every number as a float: Helm's toYaml writes 1.0 as `1`, the same YAML number.
fn as_floats(value: Value) -> Value {
    match value {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(as_floats).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, as_floats(v))).collect())
        }
        other => other,
    }
}

/// Objects by (kind, namespace, name).
fn by_key(objects: Vec<Value>) -> BTreeMap<(String, String, String), Value> {
    objects
        .into_iter()
        .map(|o| {
            let key = (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            (key, normalized(o))
        })
        .collect()
}

fn values_file(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn the_chart_defaults_install_what_deploy_base_and_monitoring_do() {
    let dir = tempfile::tempdir().unwrap();
    // The base, less its Namespace (`helm install --create-namespace` makes it).
    let defaults = values_file(dir.path(), "defaults", "{}\n");
    let chart = by_key(objects(&template(&defaults)));
    let base = by_key(
        objects(&kustomize("deploy/base"))
            .into_iter()
            .filter(|o| o["kind"] != "Namespace")
            .collect(),
    );
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        base.keys().collect::<Vec<_>>()
    );
    for (key, object) in &base {
        assert_eq!(&chart[key], object, "{key:?} differs from deploy/base");
    }

    // Monitoring in its own namespace: the ServiceMonitor and the PrometheusRule are
    // deploy/monitoring's, the dashboard holds the same JSON under the sidecar's label.
    let monitoring = values_file(
        dir.path(),
        "monitoring",
        "serviceMonitor: {enabled: true, namespace: monitoring}\nprometheusRule: {enabled: true, namespace: monitoring}\ndashboard: {enabled: true, namespace: monitoring}\n",
    );
    let chart = by_key(objects(&template(&monitoring)));
    let kustomized = by_key(objects(&kustomize("deploy/monitoring")));
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        let key = (
            kind.to_owned(),
            "monitoring".to_owned(),
            "keda-llm-scaler".to_owned(),
        );
        assert_eq!(chart.get(&key), kustomized.get(&key), "{kind}");
    }
    let key = (
        "ConfigMap".to_owned(),
        "monitoring".to_owned(),
        "keda-llm-scaler-dashboard".to_owned(),
    );
    let (rendered, shipped) = (&chart[&key], &kustomized[&key]);
    assert_eq!(rendered["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = |o: &Value| -> Value {
        serde_json::from_str(o["data"]["keda-llm-scaler.json"].as_str().unwrap()).unwrap()
    };
    assert_eq!(json(rendered), json(shipped));
}

/// Options users combine, each a values file.
const MATRIX: [(&str, &str); 5] = [
    ("defaults", "{}\n"),
    (
        "tls-existing-secret",
        "tls: {enabled: true, existingSecret: my-scaler-tls}\n",
    ),
    (
        "tls-cert-manager",
        "tls:\n  enabled: true\n  certManager: {enabled: true, clientNamespaces: [inference]}\nscaledObjects:\n  - {name: llama-70b, namespace: inference, scaleTargetRef: {name: llama-70b}, minReplicaCount: 2, maxReplicaCount: 20, metadata: {profile: llama-70b}}\n",
    ),
    (
        "monitoring-and-options",
        "serviceMonitor: {enabled: true}\nprometheusRule: {enabled: true}\ndashboard: {enabled: true}\nreplicaCount: 3\nlogFormat: text\nnodeSelector: {pool: cpu}\ntolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]\npriorityClassName: system-cluster-critical\npodAnnotations: {example.com/team: inference}\ncommonLabels: {team: inference}\ncommonAnnotations: {example.com/owner: platform}\naffinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]}]}}}\n",
    ),
    (
        "scaledobjects-and-push",
        "scaledObjects:\n  - {name: llama-70b, namespace: inference, scaleTargetRef: {name: llama-70b}, minReplicaCount: 2, maxReplicaCount: 20, metadata: {profile: llama-70b}}\n  - {name: llama-70b-batch, namespace: inference, scaleTargetRef: {name: llama-70b-batch}, minReplicaCount: 2, maxReplicaCount: 20, idleReplicaCount: 0, cooldownPeriod: 600, push: true, metadata: {profile: llama-70b}, fallback: {failureThreshold: 3, replicas: 4}}\n",
    ),
];

#[test]
fn every_combination_lints_strictly_and_renders_what_kubernetes_keda_and_the_scaler_accept() {
    let dir = tempfile::tempdir().unwrap();
    for (name, yaml) in MATRIX {
        let values = values_file(dir.path(), name, yaml);
        let (ok, out, err) = helm(&[
            "lint",
            "--strict",
            CHART,
            "--kube-version",
            KUBE_VERSION,
            "--values",
            values.to_str().unwrap(),
        ]);
        assert!(ok, "helm lint --strict ({name}): {out}{err}");

        let rendered = template(&values);
        let manifest = dir.path().join(format!("{name}-rendered.yaml"));
        std::fs::write(&manifest, &rendered).unwrap();
        let (ok, out, err) = run(Command::new("python3").args([
            &format!("{ROOT}/scripts/validate-manifests"),
            &format!("{ROOT}/tests/fixtures/keda-crds"),
            manifest.to_str().unwrap(),
        ]));
        assert!(ok, "{name}: {out}{err}");

        let built = objects(&rendered);
        let config = built
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "keda-llm-scaler")
            .unwrap_or_else(|| panic!("{name}: no config"));
        let config_text = config["data"]["config.yaml"].as_str().unwrap();
        let config_file = dir.path().join(format!("{name}-config.yaml"));
        std::fs::write(&config_file, config_text).unwrap();
        let (ok, out, err) = cli::run_binary(&["check-config", config_file.to_str().unwrap()]);
        assert!(ok, "{name}: check-config: {out}{err}");
        let deployment = built.iter().find(|o| o["kind"] == "Deployment").unwrap();
        let tls = yaml.contains("tls:");
        assert_eq!(config_text.contains("cert_file"), tls, "{name}: server.tls");
        let volumes = deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap();
        assert_eq!(
            volumes.len(),
            if tls { 2 } else { 1 },
            "{name}: {volumes:?}"
        );

        let scaled_objects = built.iter().filter(|o| o["kind"] == "ScaledObject").count();
        if scaled_objects > 0 {
            let (ok, out, err) = cli::run_binary(&[
                "check-scaledobject",
                "--config",
                config_file.to_str().unwrap(),
                manifest.to_str().unwrap(),
            ]);
            assert!(ok, "{name}: check-scaledobject: {out}{err}");
            for object in built.iter().filter(|o| o["kind"] == "ScaledObject") {
                let trigger = &object["spec"]["triggers"][0];
                assert_eq!(
                    trigger["metadata"]["scalerAddress"],
                    "keda-llm-scaler.keda-llm-scaler.svc.cluster.local:6000"
                );
                assert_eq!(trigger["metadata"]["enableTLS"] == "true", tls, "{name}");
                // Without `behavior` in the values, the one the backtest simulates.
                keda_llm_scaler_test_support::assert_recommended_behavior(object, name);
            }
        }
    }
    // The options reach the objects.
    let values = values_file(dir.path(), "options", MATRIX[3].1);
    let built = objects(&template(&values));
    let deployment = built.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(pod["spec"]["nodeSelector"]["pool"], "cpu");
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/team"],
        "inference"
    );
    assert!(pod["spec"]["affinity"]["nodeAffinity"].is_object());
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    let args = pod["spec"]["containers"][0]["args"].as_array().unwrap();
    assert!(args.iter().any(|a| a == "--log-format=text"), "{args:?}");
    for object in &built {
        assert_eq!(
            object["metadata"]["labels"]["team"], "inference",
            "{object}"
        );
        assert_eq!(
            object["metadata"]["annotations"]["example.com/owner"], "platform",
            "{object}"
        );
    }
    let kinds: Vec<&str> = built.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
}

#[test]
fn the_schema_refuses_wrong_values_with_helms_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("replicaCount: two\n", "replicaCount"),
        ("replicas: 3\n", "replicas"),
        ("image: {pullPolicy: Sometimes}\n", "pullPolicy"),
        ("tls: {enabled: yes-please}\n", "enabled"),
        (
            "scaledObjects:\n  - {name: x, scaleTargetRef: {name: x}, minReplicaCount: 2, maxReplicaCount: 20, metadata: {}}\n",
            "profile",
        ),
        // Helm merges a user's config with the default one; null removes a key.
        ("config: {prometheus: null}\n", "prometheus"),
    ];
    for (yaml, key) in cases {
        let values = values_file(dir.path(), "bad", yaml);
        let (ok, out, err) = helm(&[
            "template",
            "keda-llm-scaler",
            CHART,
            "--kube-version",
            KUBE_VERSION,
            "--values",
            values.to_str().unwrap(),
        ]);
        assert!(!ok, "{yaml}: rendered {out}");
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "{yaml}: {err}"
        );
        assert!(err.contains(key), "{yaml}: {err}");
    }
}

#[test]
fn the_chart_packages_at_the_crates_version() {
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(format!("{CHART}/Chart.yaml")).unwrap())
            .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["version"], version);
    assert_eq!(chart["appVersion"], version);
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = helm(&[
        "package",
        CHART,
        "--destination",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let archive = dir.path().join(format!("keda-llm-scaler-{version}.tgz"));
    assert!(archive.is_file(), "{out}");
    // The archive holds the chart's files, the dashboard among them.
    let (ok, listing, err) = run(Command::new("tar").args(["-tzf", archive.to_str().unwrap()]));
    assert!(ok, "{err}");
    for file in [
        "Chart.yaml",
        "values.schema.json",
        "templates/NOTES.txt",
        "files/dashboard.json",
    ] {
        assert!(
            listing.contains(&format!("keda-llm-scaler/{file}")),
            "{listing}"
        );
    }
}
