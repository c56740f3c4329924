//! The command line: `serve`, `check-config` and `explain`.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    config::Config,
    proto::{externalscaler::ScaledObjectRef, llmscaler::v1::explain_client::ExplainClient},
    server,
};

/// A KEDA external scaler for LLM inference fleets.
#[derive(Debug, Parser)]
#[command(name = "keda-llm-scaler", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    // Not doc comments: clap would print them in `--help` as a list of values, changing
    // the help users read. One JSON object a line:
    #[allow(missing_docs)]
    Json,
    // Plain text:
    #[allow(missing_docs)]
    Text,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve KEDA's external-scaler protocol (gRPC) and /metrics (HTTP).
    Serve {
        /// The config file (the mounted ConfigMap).
        #[arg(long)]
        config: PathBuf,
        /// Where gRPC listens.
        #[arg(long, default_value = "0.0.0.0:6000")]
        grpc_addr: SocketAddr,
        /// Where /metrics, /healthz and /readyz listen.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_addr: SocketAddr,
    },
    /// Validate a config file; exit 1 with every error when it is invalid.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Ask a running scaler why it answers what it answers for a trigger.
    Explain {
        /// The scaler's gRPC address (host:port).
        #[arg(long)]
        addr: String,
        /// The ScaledObject's namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// The ScaledObject's name.
        #[arg(long)]
        name: String,
        /// The trigger's metadata, as key=value (repeat for each key).
        #[arg(long = "metadata", value_parser = parse_key_value)]
        metadata: Vec<(String, String)>,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
        /// The TLS the client presents and trusts.
        #[command(flatten)]
        tls: ClientTls,
    },
    /// Check the external triggers of ScaledObject manifests against a config, exactly as
    /// the service resolves them; exit 1 on any error.
    CheckScaledobject {
        /// Manifest files (multi-document YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The scaler's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Replay a rate trace through the forecast the service runs and report its error
    /// at a lead against the last-value and seasonal-naive baselines.
    ForecastEval {
        /// A `window_start_s,rate` CSV of equal windows (starts from 0 or Unix times; a
        /// window with no row is a gap in the recording).
        #[arg(long)]
        trace: PathBuf,
        /// How far ahead to forecast, e.g. 10m or 30m.
        #[arg(long)]
        lead: crate::config::ConfigDuration,
        /// The season: 1d or 1w.
        #[arg(long, default_value = "1d")]
        period: crate::config::ConfigDuration,
        /// Past periods combined, as `predictive.history.periods` (default: 3, or as many
        /// as the trace holds before a window to score).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::config::anticipation::MAX_PERIODS)))]
        periods: Option<u32>,
        /// As `predictive.history.level_window`: a whole number of the trace's windows
        /// (default: 10m, or the trace's window where that is longer).
        #[arg(long)]
        level_window: Option<crate::config::ConfigDuration>,
        /// What a window of rate 0 is: a gap in the recording (no data, as Prometheus
        /// would have none) or an idle fleet (a rate of 0).
        #[arg(long, value_enum, default_value_t = crate::sim::forecast_eval::ZeroRate::Gap)]
        zeros: crate::sim::forecast_eval::ZeroRate,
        /// Replay the trace's shape at this fraction of its rate, each window's requests
        /// drawn from a Poisson process: the sampling noise a smaller fleet sees.
        #[arg(long, value_parser = crate::sim::backtest::parse_factor)]
        rate_scale: Option<f64>,
        /// Seeds the draws of --rate-scale: the same seed gives the same figures.
        #[arg(long, default_value_t = 1, requires = "rate_scale")]
        seed: u64,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
        /// Also write every scored window (its actual peak and each method's forecast) to
        /// this CSV file.
        #[arg(long)]
        points: Option<PathBuf>,
    },
    /// Replay a trace through a simulated fleet under this scaler and KEDA's stock
    /// triggers; print SLO attainment, GPU-hours and scale events, and plot them.
    Backtest(crate::sim::backtest::BacktestArgs),
    /// Score this scaler against the searched references (oracle, static-best,
    /// keda-tuned) and the seed's KEDA triggers over a manifest of traces, one config
    /// for all of them.
    Scorecard(crate::sim::scorecard::ScorecardArgs),
    /// Measure a replica's capacity profile: for each mix of mean prompt and output
    /// lengths, the token rates one replica sustains within the SLOs (`capacity.profile`),
    /// on the simulator's replica model, from a load test's results (--load-test) or from
    /// the fleet's own Prometheus history (--config, --profile).
    Calibrate(crate::calibrate::CalibrateArgs),
    /// Serve the gRPC service from a simulated vLLM fleet replaying Azure's conversation
    /// trace: try the scaler with grpcurl and nothing else installed.
    Demo(crate::sim::demo::DemoArgs),
}

/// TLS settings for talking to a scaler whose listener has `server.tls`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientTls {
    /// PEM CA that signed the scaler's certificate; enables TLS.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for a scaler that requires one (mTLS).
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The name to verify in the scaler's certificate (default: the host of --addr).
    #[arg(long)]
    pub tls_server_name: Option<String>,
}

impl ClientTls {
    async fn connect(&self, addr: &str) -> Result<tonic::transport::Channel, String> {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let read =
            |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        let plain = addr
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let Some(ca) = &self.ca_cert else {
            let endpoint =
                Endpoint::from_shared(format!("http://{plain}")).map_err(|e| e.to_string())?;
            return endpoint
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"));
        };
        let host = plain.rsplit_once(':').map_or(plain, |(host, _)| host);
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca)?))
            .domain_name(
                self.tls_server_name
                    .clone()
                    .unwrap_or_else(|| host.to_owned()),
            );
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Endpoint::from_shared(format!("https://{plain}"))
            .map_err(|e| e.to_string())?
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not key=value")),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Runs the command line; the binary is just this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dispatch(cli.command))
}

/// Prints an offline command's report, or its error.
fn report(result: Result<String, impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Serve {
            config,
            grpc_addr,
            http_addr,
        } => serve(config, grpc_addr, http_addr).await,
        Command::Demo(args) => demo(args).await,
        Command::Backtest(args) => report(crate::sim::backtest::backtest(&args)),
        Command::Scorecard(args) => report(crate::sim::scorecard::scorecard(&args)),
        Command::Calibrate(args) => report(crate::calibrate::calibrate(&args).await),
        Command::ForecastEval {
            trace,
            lead,
            period,
            periods,
            level_window,
            zeros,
            rate_scale,
            seed,
            json,
            points,
        } => {
            let settings = crate::sim::forecast_eval::EvalSettings {
                lead: lead.0,
                period: period.0,
                periods,
                level_window: level_window.map(|w| w.0),
                zeros,
                resample: rate_scale
                    .map(|scale| crate::sim::forecast_eval::Resample { scale, seed }),
            };
            forecast_eval(&trace, &settings, json, points.as_deref())
        }
        Command::CheckScaledobject { files, config } => check_scaledobjects(&files, &config),
        Command::CheckConfig { file } => check_config(&file),
        Command::Explain {
            addr,
            namespace,
            name,
            metadata,
            json,
            tls,
        } => explain(addr, namespace, name, metadata, json, tls).await,
    }
}

/// `forecast-eval`: the scores as a table, or as JSON.
fn forecast_eval(
    trace: &std::path::Path,
    settings: &crate::sim::forecast_eval::EvalSettings,
    json: bool,
    points: Option<&std::path::Path>,
) -> ExitCode {
    let report = crate::sim::forecast_eval::read_rate_trace(trace)
        .and_then(|trace| crate::sim::forecast_eval::evaluate(&trace, settings))
        .and_then(|report| {
            if let Some(path) = points {
                std::fs::write(path, report.points_csv()?)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(report)
        });
    match report {
        Ok(report) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report.to_json()).expect("JSON values serialize")
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.to_table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `check-scaledobject`: every trigger of every file, each problem on its own line.
fn check_scaledobjects(files: &[PathBuf], config: &std::path::Path) -> ExitCode {
    let config_path = config;
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", config_path.display());
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for file in files {
        let shown = file.display().to_string();
        let findings = match std::fs::read_to_string(file) {
            Ok(text) => crate::config::scaledobject::check(&shown, &text, &config),
            Err(e) => crate::config::scaledobject::Findings {
                ok: Vec::new(),
                errors: vec![format!("{shown}: {e}")],
            },
        };
        for line in &findings.ok {
            println!("{line}: ok");
        }
        for line in &findings.errors {
            eprintln!("{line}");
        }
        failed |= !findings.errors.is_empty();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `check-config`: ok with the profiles, or every error.
fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            println!(
                "{}: ok ({} profile{}: {})",
                file.display(),
                config.profiles.len(),
                if config.profiles.len() == 1 { "" } else { "s" },
                config.profile_names().join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_path: PathBuf, grpc_addr: SocketAddr, http_addr: SocketAddr) -> ExitCode {
    // Checked before binding, so a bad file fails fast with its errors.
    let config = match Config::load(&config_path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let (grpc, http) = match (bind(grpc_addr).await, bind(http_addr).await) {
        (Ok(grpc), Ok(http)) => (grpc, http),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The bound addresses: with port 0 the system picks one, and this line says which.
    let (grpc_addr, http_addr) = (bound(&grpc, grpc_addr), bound(&http, http_addr));
    tracing::info!(%grpc_addr, %http_addr, prometheus = config.prometheus.url.as_str(), "starting");
    match server::run_from_file(&config_path, grpc, Some(http), shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The address a listener is bound to (the one asked for, if the system cannot say).
fn bound(listener: &tokio::net::TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}

async fn demo(args: crate::sim::demo::DemoArgs) -> ExitCode {
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let (grpc, http) = match (bind(args.grpc_addr).await, bind(args.http_addr).await) {
        (Ok(grpc), Ok(http)) => (grpc, http),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        grpc_addr = %bound(&grpc, args.grpc_addr),
        http_addr = %bound(&http, args.http_addr),
        speed = args.speed,
        "demo: a simulated Llama-3-70B fleet replays Azure's conversation trace"
    );
    match crate::sim::demo::serve_demo(&args, grpc, Some(http), shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM (the kubelet) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

async fn explain(
    addr: String,
    namespace: String,
    name: String,
    metadata: Vec<(String, String)>,
    json: bool,
    tls: ClientTls,
) -> ExitCode {
    let mut client = match tls.connect(&addr).await {
        Ok(channel) => ExplainClient::new(channel),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let request = ScaledObjectRef {
        name,
        namespace,
        scaler_metadata: metadata.into_iter().collect::<HashMap<_, _>>(),
    };
    match client.explain(request).await {
        Ok(response) => {
            let explanation = response.into_inner();
            if json {
                println!("{}", explanation_json(&explanation));
            } else {
                print!("{}", server::render_explanation(&explanation));
            }
            if explanation.demand_available {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(status) => {
            eprintln!("error: {:?}: {}", status.code(), status.message());
            ExitCode::FAILURE
        }
    }
}

/// The explanation as JSON, field names as in the proto. Through a `Value`, so keys
/// come sorted, as they always have.
fn explanation_json(e: &crate::proto::llmscaler::v1::Explanation) -> String {
    let value = serde_json::to_value(e).expect("an explanation serializes");
    serde_json::to_string_pretty(&value).expect("JSON values serialize")
}
