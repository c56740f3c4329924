//! The command line as users run it, for integration tests.

use std::process::Command;

/// Runs the built `keda-llm-scaler` with these arguments: (success, stdout, stderr).
pub fn run_binary(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_keda-llm-scaler"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
