//! The `keda-llm-scaler` binary: everything lives in the library.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    keda_llm_scaler::cli::main()
}
