//! A ScaledObject manifest read as the simulator's [`ScaledObjectSpec`], so a backtest
//! can price the ScaledObject a user deploys: its bounds, polling, fallback and HPA
//! `behavior`, with KEDA's and Kubernetes' defaults where a field is absent.

use serde::Deserialize;

use super::{RatePolicy, Rules, ScaledObjectSpec, Select};
use crate::config::advanced::{
    Advanced, CheckedPolicy, PolicyKind, ScalingRules, SelectPolicy, within,
};

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
}

/// The spec fields that decide scaling. Others (`scaleTargetRef`, `triggers`,
/// `initialCooldownPeriod`) do not change what the backtest simulates: `--profile`
/// names the scaler's profile.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    min_replica_count: Option<i64>,
    max_replica_count: Option<i64>,
    idle_replica_count: Option<i64>,
    polling_interval: Option<i64>,
    cooldown_period: Option<i64>,
    fallback: Option<Fallback>,
    advanced: Option<Advanced>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fallback {
    failure_threshold: i64,
    replicas: i64,
    behavior: Option<String>,
}

/// KEDA's defaults for fields a ScaledObject leaves out.
const DEFAULT_POLLING_INTERVAL: i64 = 30;
const DEFAULT_COOLDOWN_PERIOD: i64 = 300;
const DEFAULT_MIN_REPLICAS: i64 = 0;
const DEFAULT_MAX_REPLICAS: i64 = 100;

/// Every ScaledObject in a multi-document YAML text, in order. Errors name the
/// ScaledObject, the key, the value and what is allowed.
pub fn scaled_objects(text: &str) -> Result<Vec<ScaledObjectSpec>, String> {
    let manifests: Vec<Option<Manifest>> = serde_saphyr::from_multiple(text)
        .map_err(|e| format!("not a ScaledObject manifest: {e}"))?;
    let specs = manifests
        .into_iter()
        .flatten()
        .filter(|m| m.kind.as_deref() == Some("ScaledObject"))
        .map(|m| {
            let name = m.metadata.and_then(|meta| meta.name);
            let name = name.as_deref().unwrap_or("<unnamed>");
            spec(m.spec.unwrap_or_default()).map_err(|e| format!("ScaledObject {name}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if specs.is_empty() {
        return Err("holds no ScaledObject (kind: ScaledObject)".to_owned());
    }
    Ok(specs)
}

fn spec(spec: Spec) -> Result<ScaledObjectSpec, String> {
    let min = within(
        "minReplicaCount",
        spec.min_replica_count.unwrap_or(DEFAULT_MIN_REPLICAS),
        0,
        100_000,
    )?;
    let max = within(
        "maxReplicaCount",
        spec.max_replica_count.unwrap_or(DEFAULT_MAX_REPLICAS),
        1,
        100_000,
    )?;
    if min > max {
        return Err(format!(
            "minReplicaCount {min} is above maxReplicaCount {max}"
        ));
    }
    refuse_unsimulated(&spec)?;
    let polling = spec.polling_interval.unwrap_or(DEFAULT_POLLING_INTERVAL);
    let cooldown = spec.cooldown_period.unwrap_or(DEFAULT_COOLDOWN_PERIOD);
    let fallback = match spec.fallback {
        Some(f) => Some((
            within("fallback.failureThreshold", f.failure_threshold, 0, 1_000)?,
            within("fallback.replicas", f.replicas, 0, 100_000)?,
        )),
        None => None,
    };
    let behavior = spec
        .advanced
        .and_then(|a| a.horizontal_pod_autoscaler_config)
        .and_then(|h| h.behavior);
    let (up, down) = match behavior {
        Some(b) => (b.scale_up, b.scale_down),
        None => (None, None),
    };
    // What a manifest cannot set: the HPA's tolerance and sync period.
    let defaults = ScaledObjectSpec::recommended();
    Ok(ScaledObjectSpec {
        polling_interval: f64::from(within("pollingInterval", polling, 1, 86_400)?),
        cooldown_period: f64::from(within("cooldownPeriod", cooldown, 0, 86_400)?),
        min_replicas: min,
        max_replicas: max,
        fallback,
        scale_up: rules("scaleUp", up, Rules::default_up())?,
        scale_down: rules("scaleDown", down, Rules::default_down())?,
        ..defaults
    })
}

/// Fields that change scaling in ways the simulator does not model: refused, so that a
/// figure never stands for a ScaledObject it did not simulate.
fn refuse_unsimulated(spec: &Spec) -> Result<(), String> {
    let unsimulated = |key: &str, what: &str| {
        Err(format!(
            "{key}: {what} is not simulated; backtest the ScaledObject without it"
        ))
    };
    if let Some(idle) = spec.idle_replica_count {
        return unsimulated(
            &format!("idleReplicaCount {idle}"),
            "scaling to an idle count below minReplicaCount",
        );
    }
    let fallback = spec.fallback.as_ref().and_then(|f| f.behavior.as_deref());
    if let Some(behavior) = fallback.filter(|b| *b != "static") {
        return unsimulated(
            &format!("fallback.behavior `{behavior}`"),
            "a fallback other than `static` (the replicas given)",
        );
    }
    let advanced = spec.advanced.as_ref();
    if advanced.is_some_and(|a| a.scaling_modifiers.is_some()) {
        return unsimulated("advanced.scalingModifiers", "a formula over the triggers");
    }
    let behavior = advanced
        .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
        .and_then(|h| h.behavior.as_ref());
    for (direction, rules) in behavior
        .iter()
        .flat_map(|b| [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)])
    {
        if rules.as_ref().is_some_and(|r| r.tolerance.is_some()) {
            return unsimulated(
                &format!("behavior.{direction}.tolerance"),
                "a tolerance per direction (the backtest's HPA applies the cluster-wide 0.1)",
            );
        }
    }
    Ok(())
}

/// One direction of `behavior`: Kubernetes' defaults for what it leaves out, as the
/// API server fills them in.
fn rules(direction: &str, rules: Option<ScalingRules>, default: Rules) -> Result<Rules, String> {
    let Some(rules) = rules else {
        return Ok(default);
    };
    let checked = rules.check(&format!("behavior.{direction}"))?;
    Ok(Rules {
        stabilization: checked
            .stabilization_window_seconds
            .map_or(default.stabilization, f64::from),
        select: match checked.select_policy {
            SelectPolicy::Max => Select::Max,
            SelectPolicy::Min => Select::Min,
            SelectPolicy::Disabled => Select::Disabled,
        },
        policies: checked
            .policies
            .map_or(default.policies, |p| p.iter().map(rate_policy).collect()),
    })
}

fn rate_policy(policy: &CheckedPolicy) -> RatePolicy {
    let (value, period) = (policy.value, f64::from(policy.period_seconds));
    match policy.kind {
        PolicyKind::Pods => RatePolicy::Pods { value, period },
        PolicyKind::Percent => RatePolicy::Percent { value, period },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../../deploy/examples/unified-vllm/scaledobject.yaml");

    #[test]
    fn the_shipped_example_is_the_recommended_scaled_object() {
        let specs = scaled_objects(SHIPPED).unwrap();
        assert_eq!(specs, vec![ScaledObjectSpec::recommended()]);
    }

    #[test]
    fn absent_fields_take_kedas_and_kubernetes_defaults() {
        let text = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: bare}\nspec:\n  scaleTargetRef: {name: x}\n  triggers: []\n";
        let spec = &scaled_objects(text).unwrap()[0];
        assert_eq!(spec.polling_interval, 30.0);
        assert_eq!(spec.cooldown_period, 300.0);
        assert_eq!((spec.min_replicas, spec.max_replicas), (0, 100));
        assert_eq!(spec.fallback, None);
        assert_eq!(spec.scale_up, Rules::default_up());
        assert_eq!(spec.scale_down, Rules::default_down());
        // A direction that names only its window keeps Kubernetes' policies.
        let window_only = text.replace(
            "  triggers: []\n",
            "  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleDown: {stabilizationWindowSeconds: 60, selectPolicy: Min}\n  triggers: []\n",
        );
        let spec = &scaled_objects(&window_only).unwrap()[0];
        assert_eq!(spec.scale_down.stabilization, 60.0);
        assert_eq!(spec.scale_down.select, Select::Min);
        assert_eq!(spec.scale_down.policies, Rules::default_down().policies);
    }

    #[test]
    fn every_scaled_object_of_a_file_is_read_in_order_and_other_kinds_are_skipped() {
        let two = format!(
            "kind: Deployment\nmetadata: {{name: d}}\n---\n{}---\n{}",
            SHIPPED.replace("maxReplicaCount: 20", "maxReplicaCount: 7"),
            SHIPPED
        );
        let specs = scaled_objects(&two).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!((specs[0].max_replicas, specs[1].max_replicas), (7, 20));
    }

    #[test]
    fn bad_values_name_the_scaled_object_the_key_the_value_and_what_is_allowed() {
        let cases = [
            (
                "type: Percent",
                "type: Bogus",
                "behavior.scaleDown.policies[0].type `Bogus`: expected Pods or Percent",
            ),
            (
                "periodSeconds: 60\n  triggers",
                "periodSeconds: 0\n  triggers",
                "behavior.scaleDown.policies[0].periodSeconds 0: expected a whole number from 1 to 1800",
            ),
            (
                "value: 20",
                "value: -20",
                "behavior.scaleDown.policies[0].value -20: expected a whole number",
            ),
            (
                "stabilizationWindowSeconds: 180",
                "stabilizationWindowSeconds: 7200",
                "behavior.scaleDown.stabilizationWindowSeconds 7200: expected a whole number from 0 to 3600",
            ),
            (
                "minReplicaCount: 2",
                "minReplicaCount: 30",
                "minReplicaCount 30 is above maxReplicaCount 20",
            ),
            ("replicas: 6", "replicas: -1", "fallback.replicas -1"),
            (
                "scaleDown:\n",
                "scaleDown:\n          selectPolicy: Most\n",
                "behavior.scaleDown.selectPolicy `Most`: expected Max, Min or Disabled",
            ),
            (
                "stabilizationWindowSeconds: 180",
                "stabilisationWindowSeconds: 180",
                "unknown field `stabilisationWindowSeconds`",
            ),
        ];
        let unsimulated = [
            (
                "minReplicaCount: 2",
                "minReplicaCount: 2\n  idleReplicaCount: 0",
                "idleReplicaCount 0: scaling to an idle count",
            ),
            (
                "replicas: 6",
                "replicas: 6\n    behavior: currentReplicas",
                "fallback.behavior `currentReplicas`",
            ),
            (
                "  advanced:\n",
                "  advanced:\n    scalingModifiers: {formula: x}\n",
                "advanced.scalingModifiers: a formula",
            ),
            (
                "stabilizationWindowSeconds: 180",
                "stabilizationWindowSeconds: 180\n          tolerance: 0.05",
                "behavior.scaleDown.tolerance: a tolerance per direction",
            ),
        ];
        let refused = cases.iter().map(|c| (c, false));
        for ((from, to, expected), not_simulated) in
            refused.chain(unsimulated.iter().map(|c| (c, true)))
        {
            assert!(SHIPPED.contains(from), "{from}");
            let err = scaled_objects(&SHIPPED.replacen(from, to, 1)).unwrap_err();
            assert!(err.contains(expected), "{to}: {err}");
            assert_eq!(
                err.contains("is not simulated"),
                not_simulated,
                "{to}: {err}"
            );
            if !expected.starts_with("unknown") {
                assert!(err.starts_with("ScaledObject llama-70b: "), "{err}");
            }
        }
        let static_fallback =
            SHIPPED.replacen("replicas: 6", "replicas: 6\n    behavior: static", 1);
        assert_eq!(
            scaled_objects(&static_fallback).unwrap(),
            vec![ScaledObjectSpec::recommended()]
        );
        let empty = SHIPPED.replace(
            "policies:\n            - type: Percent\n              value: 20\n              periodSeconds: 60",
            "policies: []",
        );
        assert!(
            scaled_objects(&empty)
                .unwrap_err()
                .contains("behavior.scaleDown.policies is empty")
        );
        assert!(
            scaled_objects("kind: ConfigMap\n")
                .unwrap_err()
                .contains("holds no ScaledObject")
        );
        assert!(
            scaled_objects("kind: [")
                .unwrap_err()
                .starts_with("not a ScaledObject manifest")
        );
    }
}
