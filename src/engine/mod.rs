//! The serving engines and the roles of their fleets: the lowest layer, which every
//! other one may use and which uses none of them.

mod presets;
mod roles;

pub use presets::{
    KvSeries, Latency, Preset, Series, Unsupported, latency_named, latency_support, length_support,
    model_label, preset,
};

pub use roles::{Engine, LatencySignal, Pool};
