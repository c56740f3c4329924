//! Any text given as a config either loads or is refused with a message; it never panics.
#![no_main]

use keda_llm_scaler::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Config::parse(text) {
        Ok(config) => assert!(!config.profiles.is_empty()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
