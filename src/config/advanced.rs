//! A ScaledObject's `spec.advanced`, and in it the HPA `behavior` KEDA hands to
//! Kubernetes, read as the API server validates it. A field neither KEDA's CRD nor
//! Kubernetes has is refused, not ignored: the CRD's schema prunes unknown fields
//! silently, so a misspelt `stabilisationWindowSeconds` would leave Kubernetes' 300 s in
//! force without a word. `check-scaledobject` and `backtest --scaled-object` read the
//! same types.

use serde::Deserialize;

/// `spec.advanced`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Advanced {
    /// The HPA KEDA creates.
    pub horizontal_pod_autoscaler_config: Option<HpaConfig>,
    /// What happens on deletion: no bearing on scaling.
    pub restore_to_original_replica_count: Option<bool>,
    /// A formula over the triggers (not read here).
    pub scaling_modifiers: Option<serde::de::IgnoredAny>,
}

/// `spec.advanced.horizontalPodAutoscalerConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaConfig {
    /// The HPA's name: no bearing on scaling.
    pub name: Option<String>,
    /// The scaling behavior.
    pub behavior: Option<Behavior>,
}

/// Kubernetes' `HorizontalPodAutoscalerBehavior`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// How fast replicas are added.
    pub scale_up: Option<ScalingRules>,
    /// How fast replicas are given back.
    pub scale_down: Option<ScalingRules>,
}

/// Kubernetes' `HPAScalingRules`, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    /// Seconds of past recommendations considered.
    pub stabilization_window_seconds: Option<i64>,
    /// `Max`, `Min` or `Disabled`.
    pub select_policy: Option<String>,
    /// The rate limits.
    pub policies: Option<Vec<Policy>>,
    /// A per-direction tolerance (Kubernetes 1.33 and later; not read here).
    pub tolerance: Option<serde::de::IgnoredAny>,
}

/// Kubernetes' `HPAScalingPolicy`, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Pods, or percent of the current replicas.
    pub value: i64,
    /// The window the value applies over.
    pub period_seconds: i64,
}

/// Which policy wins when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The one allowing the largest change (Kubernetes' default).
    Max,
    /// The one allowing the smallest change.
    Min,
    /// No change in this direction.
    Disabled,
}

/// What a policy limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Pods per period.
    Pods,
    /// Percent of the current replicas per period.
    Percent,
}

/// A policy whose values the API server would take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedPolicy {
    /// What it limits.
    pub kind: PolicyKind,
    /// At least 1.
    pub value: u32,
    /// 1 to 1800 seconds.
    pub period_seconds: u32,
}

/// One direction whose values the API server would take; `None`: left to Kubernetes'
/// default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRules {
    /// 0 to 3600 seconds.
    pub stabilization_window_seconds: Option<u32>,
    /// `Max` when left out.
    pub select_policy: SelectPolicy,
    /// At least one when given.
    pub policies: Option<Vec<CheckedPolicy>>,
    /// The direction sets its own tolerance.
    pub has_tolerance: bool,
}

impl ScalingRules {
    /// The values checked as Kubernetes checks them; `key` (such as
    /// `behavior.scaleDown`) prefixes the errors.
    pub fn check(&self, key: &str) -> Result<CheckedRules, String> {
        let stabilization_window_seconds = self
            .stabilization_window_seconds
            .map(|s| within(&format!("{key}.stabilizationWindowSeconds"), s, 0, 3_600))
            .transpose()?;
        let select_policy = match self.select_policy.as_deref() {
            None | Some("Max") => SelectPolicy::Max,
            Some("Min") => SelectPolicy::Min,
            Some("Disabled") => SelectPolicy::Disabled,
            Some(other) => {
                return Err(format!(
                    "{key}.selectPolicy `{}`: expected Max, Min or Disabled",
                    super::metadata::printable(other)
                ));
            }
        };
        let policies = match &self.policies {
            None => None,
            Some(policies) if policies.is_empty() => {
                return Err(format!(
                    "{key}.policies is empty: expected at least one Pods or Percent policy"
                ));
            }
            Some(policies) => Some(
                policies
                    .iter()
                    .enumerate()
                    .map(|(i, p)| p.check(&format!("{key}.policies[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(CheckedRules {
            stabilization_window_seconds,
            select_policy,
            policies,
            has_tolerance: self.tolerance.is_some(),
        })
    }
}

impl Policy {
    fn check(&self, key: &str) -> Result<CheckedPolicy, String> {
        let value = within(&format!("{key}.value"), self.value, 1, i64::from(i32::MAX))?;
        let period_seconds = within(
            &format!("{key}.periodSeconds"),
            self.period_seconds,
            1,
            1_800,
        )?;
        let kind = match self.kind.as_str() {
            "Pods" => PolicyKind::Pods,
            "Percent" => PolicyKind::Percent,
            other => {
                return Err(format!(
                    "{key}.type `{}`: expected Pods or Percent",
                    super::metadata::printable(other)
                ));
            }
        };
        Ok(CheckedPolicy {
            kind,
            value,
            period_seconds,
        })
    }
}

impl Behavior {
    /// Both directions checked; errors are prefixed with `behavior.scaleUp` or
    /// `behavior.scaleDown`.
    pub fn check(&self) -> Result<(Option<CheckedRules>, Option<CheckedRules>), String> {
        let direction = |key: &str, rules: &Option<ScalingRules>| {
            rules
                .as_ref()
                .map(|r| r.check(&format!("behavior.{key}")))
                .transpose()
        };
        Ok((
            direction("scaleUp", &self.scale_up)?,
            direction("scaleDown", &self.scale_down)?,
        ))
    }
}

/// `value` as a u32 within `[low, high]`, or an error naming the key.
pub fn within(key: &str, value: i64, low: i64, high: i64) -> Result<u32, String> {
    if (low..=high).contains(&value) {
        Ok(value as u32)
    } else {
        Err(format!(
            "{key} {value}: expected a whole number from {low} to {high}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behavior(text: &str) -> Result<(Option<CheckedRules>, Option<CheckedRules>), String> {
        let behavior: Behavior = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        behavior.check()
    }

    #[test]
    fn kubernetes_bounds_are_taken_at_their_edges_and_refused_one_past() {
        let rules = |window: i64, period: i64, value: i64| {
            behavior(&format!(
                "scaleUp:\n  stabilizationWindowSeconds: {window}\n  policies:\n  - {{type: Pods, value: {value}, periodSeconds: {period}}}\n"
            ))
        };
        let (up, down) = rules(0, 1, 1).unwrap();
        let up = up.unwrap();
        assert_eq!(down, None);
        assert_eq!(up.stabilization_window_seconds, Some(0));
        assert_eq!(up.select_policy, SelectPolicy::Max);
        assert!(!up.has_tolerance);
        let policy = CheckedPolicy {
            kind: PolicyKind::Pods,
            value: 1,
            period_seconds: 1,
        };
        assert_eq!(up.policies, Some(vec![policy]));
        let top = rules(3_600, 1_800, i64::from(i32::MAX)).unwrap().0.unwrap();
        assert_eq!(top.stabilization_window_seconds, Some(3_600));
        assert_eq!(top.policies.unwrap()[0].period_seconds, 1_800);
        for (window, period, value, expected) in [
            (
                3_601,
                1,
                1,
                "behavior.scaleUp.stabilizationWindowSeconds 3601: expected a whole number from 0 to 3600",
            ),
            (
                -1,
                1,
                1,
                "behavior.scaleUp.stabilizationWindowSeconds -1: expected",
            ),
            (
                0,
                1_801,
                1,
                "behavior.scaleUp.policies[0].periodSeconds 1801: expected a whole number from 1 to 1800",
            ),
            (
                0,
                1,
                0,
                "behavior.scaleUp.policies[0].value 0: expected a whole number from 1 to 2147483647",
            ),
        ] {
            let err = rules(window, period, value).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{window} {period} {value}: {err}"
            );
        }
    }

    #[test]
    fn select_policy_tolerance_and_an_empty_policy_list() {
        let down = behavior("scaleDown: {selectPolicy: Disabled, tolerance: 0.05}\n")
            .unwrap()
            .1
            .unwrap();
        assert_eq!(down.select_policy, SelectPolicy::Disabled);
        assert!(down.has_tolerance);
        assert_eq!(
            (down.policies, down.stabilization_window_seconds),
            (None, None)
        );
        let min = behavior("scaleDown: {selectPolicy: Min}\n")
            .unwrap()
            .1
            .unwrap();
        assert_eq!(min.select_policy, SelectPolicy::Min);
        let err = behavior("scaleDown: {selectPolicy: max}\n").unwrap_err();
        assert_eq!(
            err,
            "behavior.scaleDown.selectPolicy `max`: expected Max, Min or Disabled"
        );
        let err = behavior("scaleUp: {policies: []}\n").unwrap_err();
        assert_eq!(
            err,
            "behavior.scaleUp.policies is empty: expected at least one Pods or Percent policy"
        );
        let err = behavior("scaleUp: {policies: [{type: percent, value: 5, periodSeconds: 9}]}\n")
            .unwrap_err();
        assert_eq!(
            err,
            "behavior.scaleUp.policies[0].type `percent`: expected Pods or Percent"
        );
        // The second policy's error names its own index.
        let err = behavior(
            "scaleUp: {policies: [{type: Pods, value: 5, periodSeconds: 9}, {type: Pods, value: 5, periodSeconds: 0}]}\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("behavior.scaleUp.policies[1].periodSeconds 0"),
            "{err}"
        );
    }

    #[test]
    fn a_misspelt_field_is_refused_not_pruned() {
        let err = behavior("scaleDown: {stabilisationWindowSeconds: 60}\n").unwrap_err();
        assert!(
            err.contains("unknown field `stabilisationWindowSeconds`"),
            "{err}"
        );
        let advanced: Result<Advanced, _> =
            serde_saphyr::from_str("horizontalPodAutoscalerConfig: {behaviour: {}}\n");
        assert!(advanced.unwrap_err().to_string().contains("behaviour"));
    }
}
