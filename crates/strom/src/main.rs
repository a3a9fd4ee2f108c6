//! `strom`: one node of a Strom cluster: a broker, a controller, or both
//! (the default, and with no configuration a single node).
//!
//! Configuration, lowest precedence first: a TOML file of Kafka-named keys
//! (`--config`), `STROM_*` environment variables (`STROM_LOG_SEGMENT_BYTES`
//! sets `log.segment.bytes`), then flags.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::sync::Arc;
use strom_metadata::config::{broker_config_names, StaticConfig};

use strom_server::{Broker, BrokerOptions, ControllerNode, HttpState, TcpTransport};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

#[global_allocator]
static ALLOC: strom_alloc::Guarded = strom_alloc::Guarded;

#[derive(Debug, Parser)]
#[command(
    name = "strom",
    version,
    about = "A Kafka-wire-compatible message broker"
)]
struct Args {
    /// Address to accept clients on (port 0 picks a free port) [default:
    /// `listeners` from the config, else 127.0.0.1:9092]
    #[arg(long, env = "STROM_LISTEN")]
    listen: Option<String>,
    /// Address clients are told to connect to [default:
    /// `advertised.listeners` from the config, else the listen address]
    #[arg(long, env = "STROM_ADVERTISE")]
    advertise: Option<String>,
    /// Directory for logs and metadata [default: `log.dirs` from the
    /// config, else ./strom-data]
    #[arg(long, env = "STROM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// This node's id [default: `node.id` from the config, else 1]
    #[arg(long, env = "STROM_NODE_ID")]
    node_id: Option<i32>,
    /// Address of the HTTP listener: /metrics (Prometheus), /health/live,
    /// /health/ready (port 0 picks a free port) [default: `http.listen`
    /// from the config, else 127.0.0.1:9404, the port Kafka's Prometheus
    /// exporters use]
    #[arg(long, env = "STROM_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// TOML file of Kafka-named settings.
    #[arg(long, env = "STROM_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, env = "STROM_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, env = "STROM_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
}

/// Kafka settings from the file and the environment, as strings.
fn gather_settings(file: Option<&PathBuf>) -> Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("parsing {}", path.display()))?;
        for (k, v) in table {
            let s = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => bail!("{}: {k} has an unsupported value {other}", path.display()),
            };
            values.insert(k, s);
        }
    }
    let env_names = broker_config_names().chain(NODE_KEYS.iter().copied());
    for name in env_names {
        let var = format!("STROM_{}", name.to_uppercase().replace('.', "_"));
        if let Ok(v) = std::env::var(&var) {
            values.insert(name.to_owned(), v);
        }
    }
    Ok(values)
}

/// The node's own settings: read here, not by the broker's config.
const NODE_KEYS: &[&str] = &[
    "node.id",
    "log.dirs",
    "listeners",
    "advertised.listeners",
    "controller.listener.names",
    "controller.quorum.voters",
    "process.roles",
    "broker.rack",
];

/// `listeners` / `advertised.listeners`: `NAME://host:port` entries (a bare
/// `host:port` is PLAINTEXT), split into the client listener (the first
/// not named in `controller.listener.names`) and the controller listener.
fn split_listeners(
    value: &str,
    controller_names: &[String],
) -> Result<(Option<String>, Option<String>)> {
    let (mut client, mut controller) = (None, None);
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = entry.split_once("://").unwrap_or(("PLAINTEXT", entry));
        if address.rsplit_once(':').is_none() {
            bail!("listener {entry:?} is not NAME://HOST:PORT");
        }
        let slot = if controller_names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
        {
            &mut controller
        } else {
            &mut client
        };
        slot.get_or_insert_with(|| address.to_owned());
    }
    Ok((client, controller))
}

/// `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Roles {
    broker: bool,
    controller: bool,
}

fn parse_roles(value: &str) -> Result<Roles> {
    let mut roles: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let (broker, controller) = match roles.as_slice() {
        ["broker", "controller"] => (true, true),
        ["broker"] => (true, false),
        ["controller"] => (false, true),
        _ => bail!("process.roles={value}: the roles are broker, controller, or both"),
    };
    Ok(Roles { broker, controller })
}

/// The checks Kafka makes of a node's roles against its voters and
/// listeners (with its messages).
fn check_node(
    roles: Roles,
    node_id: i32,
    voters: &BTreeMap<i32, String>,
    has_client_listener: bool,
    has_controller_listener: bool,
    controller_name: &str,
) -> Result<()> {
    let ids: Vec<i32> = voters.keys().copied().collect();
    if !roles.controller {
        if has_controller_listener {
            bail!("controller.listener.names must not contain a value appearing in the 'listeners' configuration when running with just the broker role");
        }
        if voters.is_empty() {
            bail!("process.roles=broker needs controller.quorum.voters: the controllers this broker follows");
        }
        if voters.contains_key(&node_id) {
            bail!("if process.roles contains just the 'broker' role, the node id {node_id} must not be included in the set of voters controller.quorum.voters={ids:?}");
        }
        return Ok(());
    }
    if !roles.broker {
        if has_client_listener {
            bail!("the listeners config must only contain controller listeners from controller.listener.names when process.roles=controller");
        }
        if voters.is_empty() {
            bail!("process.roles=controller needs controller.quorum.voters");
        }
    }
    if !voters.is_empty() {
        if !voters.contains_key(&node_id) {
            bail!("if process.roles contains the 'controller' role, the node id {node_id} must be included in the set of voters controller.quorum.voters={ids:?}");
        }
        if !has_controller_listener {
            bail!("controller.quorum.voters is set, but listeners names no controller listener ({controller_name}://HOST:PORT)");
        }
    }
    Ok(())
}

/// `controller.quorum.voters`: `1@host:port,2@host:port,...`.
fn parse_voters(value: &str) -> Result<BTreeMap<i32, String>> {
    let mut voters = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = entry.split_once('@').with_context(|| {
            format!("controller.quorum.voters entry {entry:?} is not ID@HOST:PORT")
        })?;
        let id: i32 = id
            .parse()
            .with_context(|| format!("node id of controller.quorum.voters entry {entry:?}"))?;
        if address.rsplit_once(':').is_none() {
            bail!("controller.quorum.voters entry {entry:?} is not ID@HOST:PORT");
        }
        if voters.insert(id, address.to_owned()).is_some() {
            bail!("controller.quorum.voters names node {id} twice");
        }
    }
    Ok(voters)
}

fn init_logging(args: &Args) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("bad --log-level {:?}", args.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    init_logging(&args)?;
    let mut settings = gather_settings(args.config.as_ref())?;
    // Identity and addresses: flags, then Kafka-named settings, then defaults.
    // Taken out of the settings whichever wins, so that neither is
    // reported as an unknown broker key (STROM_NODE_ID is both the flag's
    // variable and the setting's).
    let node_id_setting = settings.remove("node.id");
    let log_dirs_setting = settings.remove("log.dirs");
    let node_id = match args.node_id {
        Some(n) => n,
        None => node_id_setting
            .map(|v| v.parse())
            .transpose()
            .context("node.id")?
            .unwrap_or(1),
    };
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| log_dirs_setting.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("strom-data"));
    let roles = parse_roles(
        &settings
            .remove("process.roles")
            .unwrap_or_else(|| "broker,controller".into()),
    )?;
    let controller_names: Vec<String> = settings
        .remove("controller.listener.names")
        .unwrap_or_else(|| "CONTROLLER".into())
        .split(',')
        .map(|n| n.trim().to_owned())
        .collect();
    let (client_listener, controller_listen) = match settings.remove("listeners") {
        Some(l) => split_listeners(&l, &controller_names).context("listeners")?,
        None => (None, None),
    };
    let has_client_listener = client_listener.is_some() || args.listen.is_some();
    let listen = args
        .listen
        .clone()
        .or(client_listener)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let advertise = match args.advertise.clone() {
        Some(a) => Some(a),
        None => match settings.remove("advertised.listeners") {
            Some(l) => {
                split_listeners(&l, &controller_names)
                    .context("advertised.listeners")?
                    .0
            }
            None => None,
        },
    };
    let voters = match settings.remove("controller.quorum.voters") {
        Some(v) => parse_voters(&v)?,
        None => BTreeMap::new(),
    };
    check_node(
        roles,
        node_id,
        &voters,
        has_client_listener,
        controller_listen.is_some(),
        controller_names
            .first()
            .map_or("CONTROLLER", String::as_str),
    )?;
    let rack = settings.remove("broker.rack").filter(|r| !r.is_empty());
    let http_listen = args
        .http_listen
        .clone()
        .or_else(|| settings.remove("http.listen"))
        .unwrap_or_else(|| "127.0.0.1:9404".into());
    let (config, unknown) = StaticConfig::new(settings).context("invalid configuration")?;
    for key in unknown {
        warn!(key, "ignoring unknown configuration key");
    }

    // Every segment keeps its file open: take all the descriptors the hard
    // limit allows, and tell the broker what it got.
    let open_files_limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            info!(limit, "open-files limit (raised to the hard limit)");
            Some(limit)
        }
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open-files limit");
            None
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let http = TcpListener::bind(&http_listen)
            .await
            .with_context(|| format!("binding the HTTP listener {http_listen}"))?;
        info!(http = %http.local_addr()?, "HTTP listener bound (/metrics, /health/live, /health/ready)");
        // Served from now on: live while the data directory opens, ready
        // once it is open, not ready from the moment shutdown begins.
        let (stopping_tx, mut stopping) = watch::channel(false);
        let http_state = HttpState::new(stopping.clone());
        let http = tokio::spawn(strom_server::serve_http(http, http_state.clone()));
        let controller_listener = match &controller_listen {
            Some(address) => {
                let l = TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding the controller listener {address}"))?;
                info!(controller = %l.local_addr()?, "controller listener bound");
                Some(l)
            }
            None => None,
        };
        let max_frame = config.get_i64("socket.request.max.bytes") as usize;
        let mut options = BrokerOptions {
            node_id,
            data_dir: data_dir.clone(),
            // Set below, for a broker, once its listener is bound.
            advertised_host: String::new(),
            advertised_port: 0,
            config,
            open_files_limit,
            rack,
            voters,
            transport: Arc::new(TcpTransport::new(max_frame)),
            controller_listener,
        };
        if !roles.broker {
            let node = ControllerNode::open(options)
            .await
            .with_context(|| format!("opening data directory {}", data_dir.display()))?;
            info!(data_dir = %data_dir.display(), node_id, "strom controller is ready");
            http_state.opened_controller(node.controller().clone());
            node.run(async move {
                shutdown_signal().await;
                let _ = stopping_tx.send(true);
            })
            .await;
            http.abort();
            info!("stopped");
            return Ok(());
        }
        let listener = TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
        let bound: SocketAddr = listener.local_addr()?;
        let (host, port) = match advertise {
            Some(a) => {
                let (h, p) = a.rsplit_once(':').with_context(|| format!("--advertise {a:?} is not HOST:PORT"))?;
                (h.to_owned(), p.parse::<u16>().with_context(|| format!("port of --advertise {a:?}"))?)
            }
            None if bound.ip().is_unspecified() => {
                warn!(%bound, "listening on all interfaces without --advertise; advertising 127.0.0.1");
                ("127.0.0.1".to_owned(), bound.port())
            }
            None => (bound.ip().to_string(), bound.port()),
        };
        options.advertised_host = host.clone();
        options.advertised_port = port;
        let broker = Broker::open(options)
        .await
        .with_context(|| format!("opening data directory {}", data_dir.display()))?;
        info!(listen = %bound, advertise = %format!("{host}:{port}"), data_dir = %data_dir.display(), node_id, "strom is ready");
        http_state.opened(broker.clone());
        // The HTTP listener serves until the broker has stopped.
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stopping_tx.send(true);
        });
        strom_server::run(listener, broker, async move {
            let _ = stopping.wait_for(|s| *s).await;
        })
        .await;
        http.abort();
        info!("stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[i32]) -> BTreeMap<i32, String> {
        ids.iter()
            .map(|id| (*id, format!("127.0.0.1:{}", 9093 + id)))
            .collect()
    }

    #[test]
    fn roles_are_broker_controller_or_both() {
        let both = Roles {
            broker: true,
            controller: true,
        };
        assert_eq!(parse_roles("broker,controller").unwrap(), both);
        assert_eq!(parse_roles(" controller , broker ").unwrap(), both);
        assert!(!parse_roles("broker").unwrap().controller);
        assert!(!parse_roles("controller").unwrap().broker);
        for bad in ["", "broker,zookeeper", "leader"] {
            assert!(parse_roles(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_nodes_roles_must_agree_with_its_voters_and_listeners() {
        let broker = parse_roles("broker").unwrap();
        let controller = parse_roles("controller").unwrap();
        let both = parse_roles("broker,controller").unwrap();
        let check = |roles, id, v: &[i32], client, ctl| {
            check_node(roles, id, &voters(v), client, ctl, "CONTROLLER")
        };
        // The single node of today: no voters, no controller listener.
        assert!(check(both, 1, &[], true, false).is_ok());
        assert!(check(both, 1, &[1, 2, 3], true, true).is_ok());
        assert!(check(both, 4, &[1, 2, 3], true, true).is_err());
        assert!(check(both, 1, &[1, 2, 3], true, false).is_err());
        assert!(check(broker, 4, &[1, 2, 3], true, false).is_ok());
        assert!(check(broker, 1, &[1, 2, 3], true, false).is_err());
        assert!(check(broker, 4, &[], true, false).is_err());
        assert!(check(broker, 4, &[1, 2, 3], true, true).is_err());
        assert!(check(controller, 1, &[1, 2, 3], false, true).is_ok());
        assert!(check(controller, 1, &[1, 2, 3], true, true).is_err());
        assert!(check(controller, 4, &[1, 2, 3], false, true).is_err());
        assert!(check(controller, 1, &[], false, true).is_err());
        assert!(check(controller, 1, &[1, 2, 3], false, false).is_err());
    }
}
