//! The simulator's replica model against published vLLM figures, and the load one
//! replica sustains within the SLOs: the capacity numbers a profile needs.
//!
//! cargo run --release --example calibrate [-- 70b|8b]

use keda_llm_scaler::sim::{
    model::{ModelProfile, Replica, Request, Role},
    stats::{SloThresholds, Stats},
    trace::{AZURE_CONV, Draws, Trace, seeded},
};

/// One replica under Poisson arrivals at `rate` for `seconds`, lengths drawn from `lengths`.
fn load(
    model: &ModelProfile,
    rate: f64,
    seconds: f64,
    lengths: &[(u32, u32)],
) -> (Stats, f64, f64) {
    let mut replica = Replica::new("r".into(), Role::Unified, 0.0, 0.0);
    let mut stats = Stats::new(SloThresholds::default());
    let mut rng = seeded(42);
    let mut t = 0.0;
    loop {
        t += rng.exponential(rate);
        if t > seconds {
            break;
        }
        replica.advance(t, model, &mut stats, &mut Vec::new());
        let (input, output) = lengths[rng.below(lengths.len())];
        let request = Request::new(t, input, output);
        stats.arrived(&request);
        replica.accept(request, t);
    }
    replica.advance(seconds, model, &mut stats, &mut Vec::new());
    let output = replica.counters.generation_tokens / seconds;
    let input = replica.counters.prompt_tokens / seconds;
    replica.advance(seconds + 3600.0, model, &mut stats, &mut Vec::new());
    (stats, output, input)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}", v * 1000.0))
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "70b".into());
    let model = ModelProfile::preset(&which).expect("70b or 8b");
    println!("# {}\n", model.name);

    println!("## ShareGPT-like requests (202 in / 179 out)\n");
    println!("| req/s | TTFT p50 ms | TPOT p50 ms | TPOT p90 ms | output tok/s |");
    println!("|---:|---:|---:|---:|---:|");
    let sharegpt = [(202, 179)];
    for rate in [2.0, 8.0, 16.0, 20.0, 25.0, 30.0, 35.0, 40.0, 50.0] {
        let (stats, output, _) = load(&model, rate, 600.0, &sharegpt);
        println!(
            "| {rate} | {} | {} | {} | {output:.0} |",
            ms(stats.ttft.quantile(0.5)),
            ms(stats.tpot.quantile(0.5)),
            ms(stats.tpot.quantile(0.9)),
        );
    }

    let Ok(Trace::Requests(azure)) = Trace::parse("azure", AZURE_CONV) else {
        panic!("the bundled trace parses")
    };
    let lengths: Vec<(u32, u32)> = azure.requests.iter().map(|r| (r.1, r.2)).collect();
    println!("\n## Azure conversation lengths: one replica, 30 minutes per rate\n");
    println!(
        "| req/s | TTFT <= 2 s | TPOT <= 50 ms | TTFT p99 ms | TPOT p99 ms | output tok/s | input tok/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for tenth in (5..=60).step_by(5) {
        let rate = f64::from(tenth) / 10.0;
        let (stats, output, input) = load(&model, rate, 1800.0, &lengths);
        println!(
            "| {rate:.1} | {:.2} % | {:.2} % | {} | {} | {output:.0} | {input:.0} |",
            stats.ttft_attainment() * 100.0,
            stats.tpot_attainment() * 100.0,
            ms(stats.ttft.quantile(0.99)),
            ms(stats.tpot.quantile(0.99)),
        );
    }
}
