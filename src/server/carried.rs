//! What a trigger's last evaluation carries to its next: the SLO terms' last rises, which
//! anti-windup judges (see [`crate::demand::control`]). Kept per trigger, since one
//! ScaledObject may hold several triggers on different pools, and bounded like the
//! other per-trigger caches.

use std::collections::HashMap;

use crate::{demand::control::Rise, proto::externalscaler::ScaledObjectRef};

/// The most triggers remembered; past it (metadata that changes on every call) the
/// store starts over, which costs a burning SLO at most its memory of the last rise.
const MAX_TRIGGERS: usize = 10_000;

/// A trigger: its ScaledObject's namespace and name, and its metadata, sorted.
type Key = (String, String, Vec<(String, String)>);

/// The rises each trigger's last evaluation carried.
#[derive(Default)]
pub struct Carried {
    by_trigger: HashMap<Key, Vec<Rise>>,
}

/// A trigger's metadata in one order, to key caches by (KEDA sends a map).
pub(super) fn sorted_metadata(scaled_object: &ScaledObjectRef) -> Vec<(String, String)> {
    let mut metadata: Vec<(String, String)> = scaled_object
        .scaler_metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.sort_unstable();
    metadata
}

fn key(scaled_object: &ScaledObjectRef) -> Key {
    (
        scaled_object.namespace.clone(),
        scaled_object.name.clone(),
        sorted_metadata(scaled_object),
    )
}

impl Carried {
    /// What the trigger's last evaluation carried; empty for a first one.
    pub fn get(&self, scaled_object: &ScaledObjectRef) -> Vec<Rise> {
        self.by_trigger
            .get(&key(scaled_object))
            .cloned()
            .unwrap_or_default()
    }

    /// Keeps what this evaluation carries; nothing to carry forgets the trigger.
    pub fn set(&mut self, scaled_object: &ScaledObjectRef, rises: Vec<Rise>) {
        let key = key(scaled_object);
        if rises.is_empty() {
            self.by_trigger.remove(&key);
            return;
        }
        if self.by_trigger.len() >= MAX_TRIGGERS && !self.by_trigger.contains_key(&key) {
            self.by_trigger.clear();
        }
        self.by_trigger.insert(key, rises);
    }

    /// Forgets every trigger of a ScaledObject that stopped calling.
    pub fn forget(&mut self, namespace: &str, name: &str) {
        self.by_trigger
            .retain(|(ns, n, _), _| !(ns == namespace && n == name));
    }

    /// Triggers remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_trigger.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(name: &str, pool: &str) -> ScaledObjectRef {
        ScaledObjectRef {
            name: name.into(),
            namespace: "ns".into(),
            scaler_metadata: [("pool".to_owned(), pool.to_owned())].into(),
        }
    }

    fn rise(slo: &str) -> Rise {
        Rise {
            slo: slo.into(),
            boost: 1.5,
            fixable_burn: 3.0,
            replicas: 15.0,
            at: chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time"),
            seen_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time"),
            served_at: None,
            lowest_burn_after: None,
            trim: 1.0,
        }
    }

    #[test]
    fn each_trigger_keeps_its_own_and_forgetting_drops_a_scaled_objects_all() {
        let mut carried = Carried::default();
        carried.set(&trigger("llm", "prefill"), vec![rise("ttft")]);
        carried.set(&trigger("llm", "decode"), vec![rise("tpot")]);
        carried.set(&trigger("other", "decode"), vec![rise("tpot")]);
        assert_eq!(carried.get(&trigger("llm", "prefill"))[0].slo, "ttft");
        assert_eq!(carried.get(&trigger("llm", "decode"))[0].slo, "tpot");
        carried.set(&trigger("llm", "decode"), Vec::new());
        assert!(carried.get(&trigger("llm", "decode")).is_empty());
        carried.forget("ns", "llm");
        assert_eq!(carried.len(), 1);
        assert!(carried.get(&trigger("llm", "prefill")).is_empty());
    }
}
