//! `sobot-sync sim`: command-line options for a standalone simulator.

use std::net::SocketAddr;

use chrono_tz::Tz;

use super::config::{Dialect, Faults, SimConfig};
use super::server::start;
use crate::core::timeutil::parse_time;

/// Options of `sobot-sync sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8718")]
    pub addr: SocketAddr,
    /// Seed of the synthetic call centre: equal seeds serve equal data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Average calls per hour over a day (office hours get more, nights fewer).
    #[arg(long, default_value_t = 60.0)]
    pub calls_per_hour: f64,
    /// Number of agents.
    #[arg(long, default_value_t = 12)]
    pub agents: usize,
    /// Fixed simulated now (RFC 3339 or a date); records ending later are not yet visible.
    #[arg(long)]
    pub now: Option<String>,
    /// The app id the token endpoint accepts.
    #[arg(long, default_value = "sim-app")]
    pub app_id: String,
    /// The app secret the token endpoint accepts.
    #[arg(long, default_value = "sim-secret")]
    pub app_secret: String,
    /// A token accepted forever, for clients configured with SOBOT_TOKEN.
    #[arg(long)]
    pub static_token: Option<String>,
    /// Default zone of local time strings (IANA name).
    #[arg(long, default_value = "Asia/Singapore")]
    pub timezone: String,
    /// Server cap on pageSize.
    #[arg(long, default_value_t = 200)]
    pub max_page_size: usize,
    /// All fault switches as one JSON object (the flags below override its fields).
    #[arg(long)]
    pub faults: Option<String>,
    /// Every Nth data request answers 429.
    #[arg(long)]
    pub fault_429_every: Option<u64>,
    /// Retry-After seconds sent with simulated 429s.
    #[arg(long)]
    pub fault_retry_after_secs: Option<u64>,
    /// Every Nth data request answers 500/502/503.
    #[arg(long)]
    pub fault_5xx_every: Option<u64>,
    /// Every Nth data request answers HTTP 200 with envelope code 500.
    #[arg(long)]
    pub fault_envelope_every: Option<u64>,
    /// Every Nth data request gets half its body.
    #[arg(long)]
    pub fault_truncate_every: Option<u64>,
    /// Every Nth data request is delayed by --fault-slow-ms.
    #[arg(long)]
    pub fault_slow_every: Option<u64>,
    /// Delay of the requests --fault-slow-every picks, in milliseconds.
    #[arg(long)]
    pub fault_slow_ms: Option<u64>,
    /// Lifetime of issued tokens in seconds (default 7200).
    #[arg(long)]
    pub token_ttl_secs: Option<u64>,
    /// Fraction of records that become visible --late-secs late.
    #[arg(long)]
    pub late_fraction: Option<f64>,
    /// How late the --late-fraction records become visible, in seconds.
    #[arg(long)]
    pub late_secs: Option<i64>,
    /// Billing settles later: fraction of calls first served with fees 0 (talk and
    /// parties), then, --revise-secs after they became visible, in their final form.
    #[arg(long)]
    pub revise_fraction: Option<f64>,
    /// How long a revised call stays preliminary, in seconds (default 3600).
    #[arg(long)]
    pub revise_secs: Option<i64>,
    /// Run the simulated clock at this many simulated seconds per real second,
    /// from --now (or the real now).
    #[arg(long, value_name = "N")]
    pub clock_speed: Option<f64>,
    /// Simulated milliseconds between two messages of the agent metrics stream.
    #[arg(long, default_value_t = 1000)]
    pub metrics_tick_ms: u64,
    /// Which of the API document's answer forms to speak (`literal`: the
    /// unwrapped token, `code: 0` reports, bare metrics, recordings on another host, DST
    /// report labels as rendered on the local clock).
    #[arg(long, value_enum, default_value_t = Dialect::Enveloped, env = "SOBOT_SIM_DIALECT")]
    pub dialect: Dialect,
    /// Instead of serving, send this data set's pushes to a receiver.
    #[command(subcommand)]
    pub action: Option<SimAction>,
}

/// What `sim` does besides serving the API.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum SimAction {
    /// Send pushes (talks, parties, agent statuses, call events) to `sobot-sync receive`.
    Push(super::push::PushArgs),
}

impl SimArgs {
    /// The simulator configuration these options describe, or a message naming the bad option.
    pub fn to_config(&self) -> Result<SimConfig, String> {
        let timezone: Tz = self
            .timezone
            .trim()
            .parse()
            .map_err(|_| format!("--timezone {:?} is not an IANA zone name", self.timezone))?;
        let now = match &self.now {
            Some(s) => Some(parse_time(s, timezone).map_err(|e| format!("--now: {e}"))?),
            None => None,
        };
        if !(self.calls_per_hour.is_finite() && self.calls_per_hour >= 0.0) {
            return Err(format!(
                "--calls-per-hour {} must be a number >= 0",
                self.calls_per_hour
            ));
        }
        if self.max_page_size == 0 {
            return Err("--max-page-size must be at least 1".to_string());
        }
        let mut faults: Faults = match &self.faults {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| format!("--faults is not a Faults JSON object: {e}"))?,
            None => Faults::default(),
        };
        let set = |slot: &mut Option<u64>, v: Option<u64>| {
            if v.is_some() {
                *slot = v;
            }
        };
        set(&mut faults.rate_limit_every, self.fault_429_every);
        set(&mut faults.server_error_every, self.fault_5xx_every);
        set(&mut faults.envelope_error_every, self.fault_envelope_every);
        set(&mut faults.truncate_every, self.fault_truncate_every);
        set(&mut faults.slow_every, self.fault_slow_every);
        set(&mut faults.token_ttl_secs, self.token_ttl_secs);
        if let Some(v) = self.fault_retry_after_secs {
            faults.retry_after_secs = v;
        }
        if let Some(v) = self.fault_slow_ms {
            faults.slow_ms = v;
        }
        if let Some(v) = self.late_fraction {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("--late-fraction {v} must be between 0 and 1"));
            }
            faults.late_fraction = v;
        }
        if let Some(v) = self.late_secs {
            faults.late_secs = v;
        }
        if let Some(v) = self.revise_fraction {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("--revise-fraction {v} must be between 0 and 1"));
            }
            faults.revise_fraction = v;
        }
        if let Some(v) = self.revise_secs {
            if v < 0 {
                return Err(format!("--revise-secs {v} must be at least 0"));
            }
            faults.revise_secs = v;
        }
        if let Some(v) = self.clock_speed
            && !(v.is_finite() && v > 0.0)
        {
            return Err(format!("--clock-speed {v} must be a number above 0"));
        }
        if self.metrics_tick_ms == 0 {
            return Err("--metrics-tick-ms must be at least 1".to_string());
        }
        Ok(SimConfig {
            seed: self.seed,
            app_id: self.app_id.clone(),
            app_secret: self.app_secret.clone(),
            static_token: self.static_token.clone(),
            timezone,
            calls_per_hour: self.calls_per_hour,
            agents: self.agents,
            now,
            max_page_size: self.max_page_size,
            faults,
            clock_speed: self.clock_speed,
            metrics_tick_ms: self.metrics_tick_ms,
            dialect: self.dialect,
            ..SimConfig::default()
        })
    }
}

/// Runs a simulator until Ctrl-C.
pub async fn serve(args: &SimArgs) -> std::io::Result<()> {
    let config = args
        .to_config()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if let Some(SimAction::Push(push)) = &args.action {
        return super::push::run(&config, push)
            .await
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
    }
    let app_id = config.app_id.clone();
    let handle = start(config, args.addr).await?;
    println!(
        "simulator listening on {} (app id {app_id})",
        handle.base_url()
    );
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn parse(args: &[&str]) -> Result<SimConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("sim").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.sim.to_config()
    }

    #[test]
    fn flags_override_the_faults_json() {
        let c = parse(&[
            "--seed",
            "7",
            "--faults",
            r#"{"rate_limit_every":5,"truncate_every":9}"#,
            "--fault-429-every",
            "3",
            "--timezone",
            "America/New_York",
            "--now",
            "2024-03-01T00:00:00Z",
        ]);
        let c = c.unwrap_or_default();
        assert_eq!(c.seed, 7);
        assert_eq!(c.faults.rate_limit_every, Some(3));
        assert_eq!(c.faults.truncate_every, Some(9));
        assert_eq!(c.timezone, chrono_tz::America::New_York);
        assert_eq!(
            c.now.map(|t| t.to_rfc3339()),
            Some("2024-03-01T00:00:00+00:00".to_string())
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        assert!(parse(&["--timezone", "Mars/Base"]).is_err_and(|e| e.contains("--timezone")));
        assert!(parse(&["--faults", "{"]).is_err_and(|e| e.contains("--faults")));
        assert!(parse(&["--late-fraction", "2"]).is_err_and(|e| e.contains("--late-fraction")));
        for bad in ["1.5", "-0.1", "NaN"] {
            let flag = format!("--revise-fraction={bad}");
            assert!(
                parse(&[&flag]).is_err_and(|e| e.contains("--revise-fraction")),
                "{bad}"
            );
        }
        assert!(parse(&["--revise-secs=-1"]).is_err_and(|e| e.contains("--revise-secs")));
        assert!(parse(&["--clock-speed", "0"]).is_err_and(|e| e.contains("--clock-speed")));
        assert!(parse(&["--metrics-tick-ms", "0"]).is_err_and(|e| e.contains("--metrics-tick-ms")));
    }

    #[test]
    fn the_stream_options_and_faults_reach_the_config() {
        let c = parse(&[
            "--clock-speed",
            "60",
            "--metrics-tick-ms",
            "5000",
            "--faults",
            r#"{"stream_drop_after":20,"stream_bad_every":3}"#,
        ])
        .unwrap_or_default();
        assert_eq!(c.clock_speed, Some(60.0));
        assert_eq!(c.metrics_tick_ms, 5000);
        assert_eq!(c.faults.stream_drop_after, Some(20));
        assert_eq!(c.faults.stream_bad_every, Some(3));
    }

    #[test]
    fn revision_flags_reach_the_faults() {
        let faults = |args: &[&str]| parse(args).map(|c| c.faults).expect("valid flags");
        let f = faults(&["--revise-fraction", "0.25", "--revise-secs", "600"]);
        assert_eq!((f.revise_fraction, f.revise_secs), (0.25, 600));
        // Off unless asked for, with a delay ready for when it is.
        let f = faults(&[]);
        assert_eq!((f.revise_fraction, f.revise_secs), (0.0, 3600));
        let f = faults(&["--faults", r#"{"revise_fraction":1.0}"#]);
        assert_eq!((f.revise_fraction, f.revise_secs), (1.0, 3600));
    }
}
