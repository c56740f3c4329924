//! The manifests in deploy/ agree with the code: the ScaledObject's trigger metadata
//! resolves against the shipped config, and the Deployment runs the real command line.

use std::collections::HashMap;

use keda_llm_scaler::config::{Config, metadata};

fn manifest(name: &str) -> Vec<serde_json::Value> {
    let path = format!("{}/deploy/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str_multiple(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_trigger_pointing_at_the_scaler_is_valid_for_the_shipped_config() {
    let config = Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/config.yaml"
    )))
    .unwrap();
    let mut checked = 0;
    for object in manifest("scaledobject.yaml") {
        assert_eq!(object["kind"], "ScaledObject");
        assert!(
            object["spec"]["fallback"]["replicas"].as_u64().unwrap() > 0,
            "fallback is set"
        );
        for trigger in object["spec"]["triggers"].as_array().unwrap() {
            if !matches!(trigger["type"].as_str(), Some("external" | "external-push")) {
                continue;
            }
            let metadata: HashMap<String, String> =
                serde_json::from_value(trigger["metadata"].clone()).unwrap();
            assert!(metadata["scalerAddress"].ends_with(":6000"));
            metadata::resolve(&config, &metadata).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    assert!(checked > 0, "no trigger points at the scaler");
}

#[test]
fn the_deployment_runs_serve_with_the_mounted_config_and_grpc_probes() {
    let deployment = manifest("deployment.yaml").remove(0);
    let pod = &deployment["spec"]["template"]["spec"];
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
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keda-llm-scaler"))
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
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
}

#[test]
fn the_configmap_carries_exactly_the_example_config() {
    let configmap = manifest("configmap.yaml").remove(0);
    assert_eq!(configmap["kind"], "ConfigMap");
    let embedded = configmap["data"]["config.yaml"].as_str().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/config.yaml"))
            .unwrap();
    assert_eq!(
        embedded, example,
        "deploy/configmap.yaml and deploy/config.yaml differ"
    );
    let deployment = manifest("deployment.yaml").remove(0);
    let volume = &deployment["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["configMap"]["name"], configmap["metadata"]["name"]);
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
    let deployment = manifest("deployment.yaml").remove(0);
    let mount =
        deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
            .as_str()
            .unwrap()
            .to_owned();
    assert!(cmd.contains(&format!("--config={mount}/config.yaml")));
    let ignore = std::fs::read_to_string(format!("{root}/.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"));
}
