//! The manifests in deploy/ are what the API server and the scaler accept: every
//! kustomization builds, every object validates against Kubernetes' schemas and KEDA's
//! CRDs (a broken fixture does not), the ScaledObjects resolve against the config they
//! ship with, the alerts and the dashboard are valid PromQL over series that exist, and
//! the Deployment and the image run the real command line.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::Command,
};

use keda_llm_scaler::config::{Config, metadata, scaledobject};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const KUSTOMIZATIONS: [&str; 5] = [
    "deploy/base",
    "deploy/examples/unified-vllm",
    "deploy/examples/prefill-decode",
    "deploy/examples/external-push",
    "deploy/examples/tls",
];

fn manifest(name: &str) -> Vec<serde_json::Value> {
    let path = format!("{ROOT}/deploy/{name}");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str_multiple(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// `kubectl kustomize DIR`: the objects `kubectl apply -k` would send.
fn kustomize(dir: &str) -> String {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let (ok, out) = run(Command::new(kubectl).args(["kustomize", &format!("{ROOT}/{dir}")]));
    assert!(ok, "kubectl kustomize {dir}: {out}");
    out
}

fn objects(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_str_multiple(yaml).unwrap()
}

/// scripts/validate-manifests: Kubernetes' schemas (strict) and KEDA's CRDs.
fn validate(file: &Path) -> (bool, String) {
    run(Command::new("python3").args([
        &format!("{ROOT}/scripts/validate-manifests"),
        &format!("{ROOT}/tests/fixtures/keda-crds"),
        file.to_str().unwrap(),
    ]))
}

#[test]
fn every_kustomization_builds_and_validates_and_a_broken_manifest_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut kinds = BTreeSet::new();
    for kustomization in KUSTOMIZATIONS.iter().chain(&["deploy/monitoring"]) {
        let built = kustomize(kustomization);
        for object in objects(&built) {
            kinds.insert(object["kind"].as_str().unwrap().to_owned());
        }
        let file = dir.path().join(kustomization.replace('/', "-") + ".yaml");
        std::fs::write(&file, &built).unwrap();
        let (ok, out) = validate(&file);
        assert!(ok, "{kustomization} does not validate:\n{out}");
    }
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ScaledObject",
        "TriggerAuthentication",
        "Certificate",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/: {kinds:?}");
    }

    let (ok, out) = validate(Path::new(&format!(
        "{ROOT}/tests/fixtures/broken-manifests.yaml"
    )));
    assert!(!ok, "the broken fixture validated:\n{out}");
    // Both validators find their mistake.
    assert!(
        out.contains("spec.replicas: 'two' is not of type 'integer'"),
        "{out}"
    );
    assert!(
        out.contains("spec.minReplicaCount: '2' is not of type 'integer'"),
        "{out}"
    );
    assert!(
        out.contains("spec.fallback: 'replicas' is a required property"),
        "{out}"
    );
}

/// The config a kustomization ships: its own ConfigMap's config.yaml.
fn shipped_config(built: &[serde_json::Value]) -> (String, Config) {
    let configmap = built
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "keda-llm-scaler")
        .expect("the scaler's ConfigMap");
    let text = configmap["data"]["config.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("the shipped config: {e}"));
    (text, config)
}

#[test]
fn every_scaledobject_resolves_against_the_config_it_ships_with() {
    let mut checked = 0;
    for kustomization in KUSTOMIZATIONS {
        let yaml = kustomize(kustomization);
        let built = objects(&yaml);
        let (_, config) = shipped_config(&built);
        // The lint users run finds nothing to say.
        let findings = scaledobject::check(kustomization, &yaml, &config);
        assert!(
            findings.errors.is_empty(),
            "{kustomization}: {:?}",
            findings.errors
        );
        for object in built.iter().filter(|o| o["kind"] == "ScaledObject") {
            let spec = &object["spec"];
            for key in ["pollingInterval", "cooldownPeriod", "maxReplicaCount"] {
                assert!(spec[key].as_u64().is_some(), "{kustomization}: {key}");
            }
            assert!(spec["fallback"]["replicas"].as_u64().unwrap() > 0);
            // The behavior the backtest simulates is the one shipped.
            keda_llm_scaler_test_support::assert_recommended_behavior(object, kustomization);
            for trigger in spec["triggers"].as_array().unwrap() {
                let metadata: HashMap<String, String> =
                    serde_json::from_value(trigger["metadata"].clone()).unwrap();
                assert!(metadata["scalerAddress"].ends_with(":6000"));
                metadata::resolve(&config, &metadata).unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "{checked} triggers");
    // The warm pool and the push example's scale to zero.
    let unified = objects(&kustomize("deploy/examples/unified-vllm"));
    let so = unified
        .iter()
        .find(|o| o["kind"] == "ScaledObject")
        .unwrap();
    assert_eq!(so["spec"]["minReplicaCount"], 2);
    let push = objects(&kustomize("deploy/examples/external-push"));
    let so = push.iter().find(|o| o["kind"] == "ScaledObject").unwrap();
    assert_eq!(so["spec"]["triggers"][0]["type"], "external-push");
    // TLS: the trigger asks for it and authenticates with the three TLS parameters.
    let tls = objects(&kustomize("deploy/examples/tls"));
    let so = tls.iter().find(|o| o["kind"] == "ScaledObject").unwrap();
    assert_eq!(so["spec"]["triggers"][0]["metadata"]["enableTLS"], "true");
    let auth = tls
        .iter()
        .find(|o| o["kind"] == "TriggerAuthentication")
        .unwrap();
    assert_eq!(
        so["spec"]["triggers"][0]["authenticationRef"]["name"],
        auth["metadata"]["name"]
    );
    let parameters: BTreeSet<&str> = auth["spec"]["secretTargetRef"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["parameter"].as_str().unwrap())
        .collect();
    assert_eq!(
        parameters,
        BTreeSet::from(["caCert", "tlsClientCert", "tlsClientKey"])
    );
    let (_, config) = shipped_config(&tls);
    assert!(
        config.server.tls.is_some(),
        "the TLS example's scaler serves TLS"
    );
}

#[test]
fn the_base_ships_its_config_under_a_stable_name_and_check_config_accepts_it() {
    let built = objects(&kustomize("deploy/base"));
    let (text, _) = shipped_config(&built);
    let example = std::fs::read_to_string(format!("{ROOT}/deploy/base/config.yaml")).unwrap();
    assert_eq!(text, example);
    let deployment = built.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let volume = &deployment["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(
        volume["configMap"]["name"], "keda-llm-scaler",
        "no hash suffix"
    );
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_keda-llm-scaler"))
        .args(["check-config", &format!("{ROOT}/deploy/base/config.yaml")]));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_keda-llm-scaler")).args([
        "check-config",
        &format!("{ROOT}/deploy/examples/tls/config.yaml"),
    ]));
    assert!(ok, "{out}");
}

#[test]
fn the_deployment_runs_serve_with_the_mounted_config_and_grpc_probes() {
    let deployment = manifest("base/deployment.yaml").remove(0);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(
        !pod["topologySpreadConstraints"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(pod["serviceAccountName"], "keda-llm-scaler");
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    let config_arg = args
        .iter()
        .find_map(|a| a.strip_prefix("--config="))
        .unwrap();
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert_eq!(config_arg, format!("{mount}/config.yaml"));
    assert!(args.contains(&"--grpc-addr=0.0.0.0:6000"));
    // The binary accepts exactly these arguments.
    let output = Command::new(env!("CARGO_BIN_EXE_keda-llm-scaler"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap();
        assert!(
            help.contains(flag),
            "`{flag}` is not a flag of serve:\n{help}"
        );
    }
    assert_eq!(container["livenessProbe"]["grpc"]["port"], 6000);
    assert_eq!(container["readinessProbe"]["grpc"]["port"], 6000);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(
        container["resources"]["limits"]["memory"]
            .as_str()
            .is_some()
    );
}

/// Every metric name the scaler exports, as /metrics spells it: a Telemetry with a
/// sample in each labelled family (empty families are not encoded).
fn scaler_metric_names() -> BTreeSet<String> {
    use keda_llm_scaler::server::telemetry::*;
    let telemetry = Telemetry::new();
    let so = ScaledObjectLabels {
        namespace: "n".into(),
        scaledobject: "s".into(),
    };
    for family in [
        &telemetry.demand,
        &telemetry.active,
        &telemetry.at_max,
        &telemetry.replicas,
        &telemetry.answer_age,
        &telemetry.forecast_tokens,
    ] {
        family.get_or_create(&so).set(1.0);
    }
    telemetry.stale_answers.get_or_create(&so).inc();
    telemetry
        .term
        .get_or_create(&TermLabels {
            namespace: "n".into(),
            scaledobject: "s".into(),
            term: "queue".into(),
        })
        .set(1.0);
    telemetry
        .capacity_mix
        .get_or_create(&MixLabels {
            namespace: "n".into(),
            scaledobject: "s".into(),
            quantity: MIX_QUANTITIES[0].into(),
        })
        .set(1.0);
    for family in [
        &telemetry.forecast_candidate_weight,
        &telemetry.forecast_candidate_error,
    ] {
        family
            .get_or_create(&CandidateLabels {
                namespace: "n".into(),
                scaledobject: "s".into(),
                candidate: FORECAST_CANDIDATES[0].into(),
            })
            .set(1.0);
    }
    for family in [
        &telemetry.slo_burn_rate,
        &telemetry.slo_fixable_burn_rate,
        &telemetry.slo_unfixable_ratio,
    ] {
        family
            .get_or_create(&BurnLabels {
                namespace: "n".into(),
                scaledobject: "s".into(),
                slo: "ttft".into(),
                window: "short".into(),
            })
            .set(1.0);
    }
    for family in [
        &telemetry.slo_boost,
        &telemetry.slo_trim,
        &telemetry.slo_boost_held,
    ] {
        family
            .get_or_create(&SloLabels {
                namespace: "n".into(),
                scaledobject: "s".into(),
                slo: "ttft".into(),
            })
            .set(1.0);
    }
    telemetry
        .query_duration
        .get_or_create(&SignalLabels {
            signal: "queue".into(),
        })
        .observe(0.01);
    telemetry
        .query_errors
        .get_or_create(&QueryErrorLabels {
            signal: "queue".into(),
            kind: "timeout".into(),
        })
        .inc();
    telemetry
        .evaluations
        .get_or_create(&ResultLabels {
            result: "ok".into(),
        })
        .inc();
    telemetry
        .open_streams
        .get_or_create(&MethodLabels {
            method: "StreamIsActive".into(),
        })
        .inc();
    telemetry.record_grpc("GetMetrics", tonic::Code::Ok, Some(0.001));
    let exposition = telemetry.encode();
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

/// Metric names in PromQL: the scaler's, vLLM's and recording rules' (`a:b:c`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    let mut in_string = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            in_string = !in_string;
        }
        if !in_string && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            current.push(c);
        } else {
            if current.starts_with("keda_llm_scaler_") || current.contains(':') {
                names.push(std::mem::take(&mut current));
            }
            current.clear();
        }
    }
    names
}

/// Writes PromQL rule groups for promtool and checks them.
fn promtool_check(dir: &Path, name: &str, groups: &serde_json::Value) {
    let file: PathBuf = dir.join(name);
    std::fs::write(&file, serde_json::json!({ "groups": groups }).to_string()).unwrap();
    let (ok, out) = run(Command::new("promtool").args(["check", "rules", file.to_str().unwrap()]));
    assert!(ok, "promtool check rules {name}: {out}");
}

#[test]
fn alerts_and_dashboard_are_valid_promql_over_series_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let rule = manifest("monitoring/prometheusrule.yaml").remove(0);
    let groups = &rule["spec"]["groups"];
    promtool_check(dir.path(), "rules.json", groups);

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/deploy/monitoring/dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 10);
    let dashboard_rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("dashboard:panel_{i}"), "expr": e}))
        .collect();
    promtool_check(
        dir.path(),
        "dashboard.json",
        &serde_json::json!([{"name": "dashboard", "rules": dashboard_rules}]),
    );

    // Only series the scaler or vLLM export, and the recording rules above.
    let mut known = scaler_metric_names();
    for name in [
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:time_to_first_token_seconds_count",
        "vllm:request_time_per_output_token_seconds_bucket",
        "vllm:request_time_per_output_token_seconds_count",
        "vllm:generation_tokens_total",
        "vllm:prompt_tokens_total",
    ] {
        known.insert(name.to_owned());
    }
    let mut all_exprs = exprs.clone();
    for group in groups.as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            if let Some(record) = rule["record"].as_str() {
                known.insert(record.to_owned());
            }
            all_exprs.push(rule["expr"].as_str().unwrap().to_owned());
        }
    }
    for expr in &all_exprs {
        for name in metric_names(expr) {
            assert!(
                known.contains(&name),
                "`{name}` is not a series anyone exports: {expr}"
            );
        }
    }
    // Every alert the operator's guide promises.
    let alerts: BTreeSet<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "KedaLlmScalerErrors",
        "KedaLlmScalerEvaluationsStale",
        "KedaLlmScalerConfigReloadFailing",
        "KedaLlmScalerDemandAtMax",
        "KedaLlmScalerSloBurning",
        "KedaLlmScalerSloBoostHeld",
        "KedaLlmScalerSloTrimmed",
    ] {
        assert!(alerts.contains(alert), "{alert} missing: {alerts:?}");
    }
    // The dashboard shows demand against replicas and every term.
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("keda_llm_scaler_observed_replicas"))
    );
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("keda_llm_scaler_term_replicas"))
    );
}

/// The JSON array of an exec-form Dockerfile instruction.
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{instruction} is not exec form: {e}"))
}

#[test]
fn the_image_builds_with_its_own_command_and_runs_serve_as_non_root() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(
        stages[1].contains("distroless") && stages[1].contains("nonroot"),
        "{}",
        stages[1]
    );
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    assert!(
        user.split(':')
            .all(|id| id.parse::<u32>().is_ok_and(|id| id > 0)),
        "numeric non-root: {user}"
    );

    // The build, exactly as the Dockerfile runs it.
    let build = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("RUN cargo "))
        .expect("the build stage runs cargo");
    let words: Vec<&str> = build.split_whitespace().collect();
    assert!(
        words.contains(&"--release") && words.contains(&"--locked"),
        "{build}"
    );
    let status = std::process::Command::new(env!("CARGO"))
        .args(&words)
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success(), "`cargo {build}` failed");
    let copied = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("COPY --from=build "))
        .unwrap();
    let (from, to) = copied.split_once(' ').unwrap();
    let built = std::path::Path::new(
        &std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| format!("{root}/target")),
    )
    .join("release/keda-llm-scaler");
    assert!(built.exists(), "{}", built.display());
    assert_eq!(from, "/src/target/release/keda-llm-scaler");

    // ENTRYPOINT is the copied binary; CMD is `serve` with flags the binary has.
    let entrypoint = exec_form(&dockerfile, "ENTRYPOINT");
    assert_eq!(entrypoint, [to]);
    let cmd = exec_form(&dockerfile, "CMD");
    assert_eq!(cmd[0], "serve");
    let help = std::process::Command::new(&built)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for arg in &cmd[1..] {
        let flag = arg.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")),
            "`{flag}` is not a flag of serve:\n{help}"
        );
    }
    // The same config path as the Deployment mounts.
    let deployment = manifest("base/deployment.yaml").remove(0);
    let mount =
        deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
            .as_str()
            .unwrap()
            .to_owned();
    assert!(cmd.contains(&format!("--config={mount}/config.yaml")));
    let ignore = std::fs::read_to_string(format!("{root}/.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"));
}
