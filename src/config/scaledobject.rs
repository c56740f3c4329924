//! `check-scaledobject`: the triggers of ScaledObject manifests that point at this
//! scaler, checked against a config exactly as the gRPC service resolves them, and the
//! HPA `behavior` checked as the API server would take it (see [`super::advanced`]).

use std::collections::HashMap;

use serde::Deserialize;

use super::{Config, advanced::Advanced, metadata};

/// The trigger types KEDA sends to an external scaler.
const EXTERNAL_TYPES: &[&str] = &["external", "external-push"];

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    spec: Option<ScaledObjectSpec>,
}

#[derive(Debug, Deserialize)]
struct ObjectMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ScaledObjectSpec {
    #[serde(default)]
    triggers: Vec<Trigger>,
    #[serde(default)]
    advanced: Option<Advanced>,
}

#[derive(Debug, Deserialize)]
struct Trigger {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

/// What a manifest file holds for this scaler.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Triggers that resolved, as `namespace/name trigger N (profile P, metric M)`.
    pub ok: Vec<String>,
    /// Every problem, each naming the ScaledObject and the trigger.
    pub errors: Vec<String>,
}

/// Checks every ScaledObject in a multi-document YAML text. `file` prefixes messages.
pub fn check(file: &str, text: &str, config: &Config) -> Findings {
    let mut findings = Findings::default();
    let manifests: Vec<Option<Manifest>> = match serde_saphyr::from_multiple(text) {
        Ok(manifests) => manifests,
        Err(e) => {
            findings
                .errors
                .push(format!("{file}: not a manifest Kubernetes would take as written (a field KEDA's CRD does not have is dropped without a word): {e}"));
            return findings;
        }
    };
    for manifest in manifests.into_iter().flatten() {
        if manifest.kind.as_deref() != Some("ScaledObject") {
            continue;
        }
        let meta = manifest.metadata.unwrap_or(ObjectMeta {
            name: None,
            namespace: None,
        });
        let namespace = meta.namespace.unwrap_or_else(|| "default".to_owned());
        let name = meta.name.unwrap_or_else(|| "<unnamed>".to_owned());
        let spec = manifest.spec.unwrap_or(ScaledObjectSpec {
            triggers: Vec::new(),
            advanced: None,
        });
        let behavior = spec
            .advanced
            .as_ref()
            .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
            .and_then(|h| h.behavior.as_ref());
        if let Some(Err(e)) = behavior.map(|b| b.check()) {
            findings.errors.push(format!(
                "{file}: ScaledObject {namespace}/{name}: advanced.horizontalPodAutoscalerConfig.{e}"
            ));
        }
        let triggers = spec.triggers;
        for (index, trigger) in triggers.iter().enumerate() {
            if !EXTERNAL_TYPES.contains(&trigger.kind.as_str()) {
                continue;
            }
            let which = match &trigger.name {
                Some(trigger_name) => format!("trigger {index} ({trigger_name})"),
                None => format!("trigger {index}"),
            };
            let at = format!("{file}: ScaledObject {namespace}/{name} {which}");
            if !trigger.metadata.contains_key("scalerAddress") {
                findings.errors.push(format!(
                    "{at}: scalerMetadata key `scalerAddress` is required by KEDA: this scaler's gRPC address, host:port"
                ));
            }
            match resolve_all(config, &namespace, &trigger.metadata) {
                Ok(target) => findings.ok.push(format!(
                    "{at}: profile {}, metric {}",
                    target.profile_name, target.metric_name
                )),
                Err(problems) => findings
                    .errors
                    .extend(problems.into_iter().map(|e| format!("{at}: {e}"))),
            }
        }
    }
    findings
}

/// Trigger keys whose values are checked the same whatever the profile.
const PROFILE_FREE_KEYS: [&str; 4] = [
    "queuePerReplica",
    "outputTokensPerSecond",
    "inputTokensPerSecond",
    "kvCacheTarget",
];

/// Resolves a trigger as the service would, but reports every problem, not the first:
/// each key found wrong is set aside and the rest resolved again, until the metadata
/// resolves or the namespace is refused. When the profile is the problem, the values
/// that do not depend on it are still checked (against the config's first profile).
fn resolve_all(
    config: &Config,
    namespace: &str,
    trigger: &HashMap<String, String>,
) -> Result<metadata::Target, Vec<String>> {
    let mut metadata = trigger.clone();
    let mut problems = Vec::new();
    // Each round removes a key or stops: at most one round per key, and one more.
    for _ in 0..=trigger.len() + 1 {
        match metadata::resolve_scaled_object(config, namespace, &metadata) {
            Ok(target) if problems.is_empty() => return Ok(target),
            Ok(_) => return Err(problems),
            Err(e) => {
                let key = match &e {
                    metadata::ResolveError::Metadata(error) => Some(error.key.clone()),
                    metadata::ResolveError::Forbidden(_) => None,
                };
                problems.push(e.to_string());
                match (key.as_deref(), config.profile_names().first()) {
                    (Some("profile"), Some(first)) => {
                        // The pool's value is checked alone: whether the first profile
                        // could serve that pool says nothing of the profile meant.
                        if let Err(e) = metadata::pool_named(&metadata) {
                            problems.push(metadata::ResolveError::Metadata(e).to_string());
                        }
                        metadata.retain(|k, _| PROFILE_FREE_KEYS.contains(&k.as_str()));
                        metadata.insert("profile".into(), (*first).to_owned());
                    }
                    (Some(key), _) if key != "profile" && metadata.remove(key).is_some() => {}
                    _ => return Err(problems),
                }
            }
        }
    }
    Err(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = include_str!("../../deploy/base/config.yaml");

    #[test]
    fn the_shipped_scaledobject_passes() {
        let config = Config::parse(CONFIG).unwrap();
        let text = include_str!("../../deploy/examples/unified-vllm/scaledobject.yaml");
        let findings = check("scaledobject.yaml", text, &config);
        assert_eq!(findings.errors, Vec::<String>::new());
        assert_eq!(findings.ok.len(), 1, "{findings:?}");
        assert!(findings.ok[0].contains("inference/llama-70b trigger 0"));
    }

    #[test]
    fn every_bad_trigger_is_named_with_its_file_object_and_index() {
        let config = Config::parse(CONFIG).unwrap();
        let text = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: a, namespace: team}
spec:
  scaleTargetRef: {name: a}
  triggers:
    - type: cpu
      metadata: {value: "50"}
    - type: external
      name: llm
      metadata: {scalerAddress: "s:6000", profile: nope}
    - type: external-push
      metadata: {profile: llama-70b, queuePerReplica: "-3"}
---
"#;
        let findings = check("so.yaml", text, &config);
        assert_eq!(findings.ok, Vec::<String>::new());
        assert_eq!(findings.errors.len(), 3, "{findings:#?}");
        assert!(
            findings.errors[0].starts_with("so.yaml: ScaledObject team/a trigger 1 (llm):")
                && findings.errors[0].contains("`nope` is not a profile"),
            "{}",
            findings.errors[0]
        );
        assert!(findings.errors[1].contains("trigger 2: scalerMetadata key `scalerAddress`"));
        assert!(
            findings.errors[2].contains("queuePerReplica"),
            "{}",
            findings.errors[2]
        );
    }

    /// The shipped example with its `behavior` edited.
    fn with_behavior(from: &str, to: &str) -> Findings {
        let config = Config::parse(CONFIG).unwrap();
        let text = include_str!("../../deploy/examples/unified-vllm/scaledobject.yaml");
        assert!(text.contains(from), "the example has no `{from}`");
        check("so.yaml", &text.replacen(from, to, 1), &config)
    }

    #[test]
    fn a_misspelt_behavior_field_is_refused_not_dropped() {
        let findings = with_behavior("stabilizationWindowSeconds", "stabilisationWindowSeconds");
        assert_eq!(findings.errors.len(), 1, "{findings:?}");
        assert!(
            findings.errors[0].contains("unknown field `stabilisationWindowSeconds`"),
            "{}",
            findings.errors[0]
        );
        let findings = with_behavior(
            "horizontalPodAutoscalerConfig",
            "horizontalPodAutoScalerConfig",
        );
        assert!(
            findings.errors[0].contains("unknown field `horizontalPodAutoScalerConfig`"),
            "{findings:?}"
        );
    }

    #[test]
    fn a_behavior_value_kubernetes_refuses_is_named() {
        let findings = with_behavior("type: Percent", "type: Percentage");
        assert_eq!(
            findings.errors,
            vec![
                "so.yaml: ScaledObject inference/llama-70b: advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies[0].type `Percentage`: expected Pods or Percent"
            ]
        );
        // The trigger is still checked.
        assert_eq!(findings.ok.len(), 1, "{findings:?}");
        let findings = with_behavior(
            "stabilizationWindowSeconds: 180",
            "stabilizationWindowSeconds: 7200",
        );
        assert!(
            findings.errors[0].ends_with(
                "behavior.scaleDown.stabilizationWindowSeconds 7200: expected a whole number from 0 to 3600"
            ),
            "{findings:?}"
        );
    }

    #[test]
    fn every_problem_of_one_trigger_is_reported() {
        let config = Config::parse(CONFIG).unwrap();
        let text = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: b, namespace: team}
spec:
  scaleTargetRef: {name: b}
  triggers:
    - type: external
      metadata: {scalerAddress: "s:6000", profle: llama-70b, queuePerReplica: "-3", kvCacheTarget: "2", profile: nope, pool: sideways}
"#;
        let findings = check("so.yaml", text, &config);
        let all = findings.errors.join("\n");
        assert_eq!(findings.errors.len(), 5, "{all}");
        for expected in [
            "`profle`",
            "queuePerReplica",
            "kvCacheTarget",
            "`nope` is not a profile",
            "`sideways` is not allowed",
        ] {
            assert!(all.contains(expected), "{expected}: {all}");
        }
        assert!(
            findings
                .errors
                .iter()
                .all(|e| e.starts_with("so.yaml: ScaledObject team/b trigger 0:"))
        );
    }
}
