//! The `keda-llm-scaler` binary: everything lives in the library.

#![forbid(unsafe_code)]

/// mimalloc returns freed memory to the system: after Prometheus sends a large answer,
/// the scaler's RSS falls back instead of staying at its peak (glibc's allocator keeps
/// fragmented per-thread arenas). BENCHMARKS.md has the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    keda_llm_scaler::cli::main()
}
