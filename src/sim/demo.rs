//! `demo`: the real gRPC service (and /metrics, Explain, reflection) answering from a
//! simulated fleet that replays Azure's conversation trace in accelerated real time,
//! scaled by this scaler through an emulated KEDA and HPA. Nothing else to install.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{net::TcpListener, sync::watch};

use super::{
    fleet::Router,
    hpa::ScaledObjectSpec,
    model::{ModelProfile, Request},
    run::{Policy, PoolSetup, Setup, Simulation, needs},
    stats::SloThresholds,
    trace::{AZURE_CONV, AZURE_CONV_NAME, Arrivals, Replay, Trace},
};
use crate::{
    config::Config,
    query::QuerySpec,
    server::{self, State},
    source::{MetricsSource, Sample, SourceError},
};

/// The demo's config: the backtest fleet's profile.
pub const DEMO_CONFIG: &str = include_str!("../../backtest/llama-70b.yaml");

/// `keda-llm-scaler demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where gRPC listens.
    #[arg(long, default_value = "127.0.0.1:6000")]
    pub grpc_addr: SocketAddr,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Simulated seconds per second: 10 replays the hour-long trace in 6 minutes (then
    /// again).
    #[arg(long, default_value_t = 10.0, value_parser = crate::sim::backtest::parse_factor)]
    pub speed: f64,
    /// Multiplies the trace's request rate.
    #[arg(long, default_value_t = 4.0, value_parser = crate::sim::backtest::parse_factor)]
    pub rate_scale: f64,
    /// A config to serve instead of the built-in one (its profile must scale a unified
    /// pool).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The profile the simulated fleet is scaled on (default: the config's first).
    #[arg(long)]
    pub profile: Option<String>,
    /// Seeds the replay.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The simulation and the queries of the profile it answers.
struct Live {
    simulation: Simulation,
    /// The profile's queries, by their PromQL.
    queries: HashMap<String, QuerySpec>,
    profile: String,
}

/// A metrics source backed by the simulated fleet's Prometheus.
pub struct SimulatedPrometheus {
    live: Arc<Mutex<Live>>,
}

impl MetricsSource for SimulatedPrometheus {
    fn query(&self, promql: &str) -> impl Future<Output = Result<Vec<Sample>, SourceError>> + Send {
        let live = self.live.lock().expect("simulation lock");
        let answer = match live.queries.get(promql) {
            Some(spec) => live.simulation.tsdbs[0]
                .answer(spec, live.simulation.now)
                .map_err(|message| SourceError::Query {
                    kind: "simulation".into(),
                    message,
                }),
            None => Err(SourceError::Query {
                kind: "simulation".into(),
                message: format!(
                    "the demo's simulated fleet answers the queries of profile `{}` with no metadata overrides",
                    live.profile
                ),
            }),
        };
        std::future::ready(answer)
    }
}

/// Serves the demo on the given listeners until `shutdown`.
pub async fn serve_demo(
    args: &DemoArgs,
    grpc: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Config::parse(DEMO_CONFIG).map_err(|e| format!("the built-in config: {e}"))?,
    };
    let profile = match &args.profile {
        Some(name) => name.clone(),
        None => config
            .profile_names()
            .first()
            .map(|name| (*name).to_owned())
            .ok_or("the config has no profile")?,
    };
    let pool = PoolSetup::new(&config, &profile, ScaledObjectSpec::recommended())
        .map_err(|e| format!("--profile: {e}"))?;
    if pool.role != super::model::Role::Unified {
        return Err(format!(
            "profile `{profile}` scales a {} pool: the demo simulates a unified fleet",
            pool.target.pool.as_str()
        ));
    }
    let Ok(Trace::Requests(trace)) = Trace::parse(AZURE_CONV_NAME, AZURE_CONV) else {
        unreachable!("the bundled trace is a request trace")
    };
    let replay = Replay {
        rate_scale: args.rate_scale,
        seed: args.seed,
        ..Replay::default()
    };
    let arrivals = move || {
        Arrivals::new(Trace::Requests(trace.clone()), None, replay)
            .expect("a request trace needs no lengths")
    };
    let queries = pool
        .plan
        .specs
        .iter()
        .map(|spec| (spec.promql(), spec.clone()))
        .collect();
    let setup = Setup {
        model: ModelProfile::llama3_70b_tp4_h100(),
        router: Router::LeastOutstanding,
        pools: vec![pool.clone()],
        seed: ScaledObjectSpec::seed(),
        thresholds: SloThresholds::default(),
        scrape_interval: 15.0,
        start: chrono::Utc::now(),
        request_timeout: 300.0,
        on_term_error: config.evaluation.on_term_error,
        // Nobody reads the demo's timeline: one point at the start, none after.
        sample_every: f64::INFINITY,
        drain_limit: 0.0,
        oracle_window: 60.0,
        keda: super::run::KedaThresholds::SEED,
    };
    let lookahead = needs(&setup, arrivals());
    let live = Arc::new(Mutex::new(Live {
        simulation: Simulation::new(setup, Policy::Scaler, lookahead),
        queries,
        profile,
    }));

    let (_config_tx, config_rx) = watch::channel(Arc::new(config));
    let state = Arc::new(State::new(
        config_rx,
        SimulatedPrometheus { live: live.clone() },
    ));
    let driver = tokio::spawn(drive(live, arrivals, args.speed, state.shutdown.clone()));
    let served = server::serve(state, grpc, http, shutdown).await;
    driver.abort();
    served.map_err(|e| e.to_string())
}

/// Moves the simulation with the wall clock, replaying the trace again when it ends.
async fn drive(
    live: Arc<Mutex<Live>>,
    arrivals: impl Fn() -> Arrivals + Send + 'static,
    speed: f64,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let started = tokio::time::Instant::now();
    let mut current = arrivals();
    let mut round_length = current.duration();
    let mut offset = 0.0;
    let mut next: Option<Request> = current.next();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let target = started.elapsed().as_secs_f64() * speed;
        let mut live = live.lock().expect("simulation lock");
        loop {
            let Some(request) = next else {
                // The trace ended: play it again from where this round ends.
                offset += round_length.max(1.0);
                current = arrivals();
                round_length = current.duration();
                next = current.next();
                if next.is_none() {
                    // A rate scale that thins every request away: nothing ever arrives.
                    offset = f64::INFINITY;
                    break;
                }
                continue;
            };
            let at = request.arrival + offset;
            if at > target {
                break;
            }
            live.simulation
                .arrive(Request::new(at, request.input, request.output));
            next = current.next();
        }
        live.simulation.run_timers(target);
    }
}
