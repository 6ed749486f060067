//! `convene serve` settings: defaults < config file < `CONVENE_*` environment < command-line flags.
//!
//! clap reads the flags and their environment variables (a flag wins over its variable); what neither
//! sets comes from the TOML file, and what that leaves open from [`ServeConfig::default`]. The commented
//! reference file is `config/convene.toml`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Everything `convene serve` needs, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// None: SQLite in the data directory.
    pub database_url: Option<String>,
    pub http: SocketAddr,
    pub public_ip: IpAddr,
    pub media_ports: PortRange,
    pub media_workers: usize,
    /// Subscribers' media on the fast path (false: through str0m).
    pub media_fast_path: bool,
    /// Media worker threads under SCHED_FIFO at this priority; None: ordinary scheduling.
    pub media_realtime_priority: Option<u8>,
    /// Base URL people open (links in e-mails point here), no trailing slash.
    pub public_url: String,
    /// None: e-mails are written to `<data-dir>/outbox/`.
    pub smtp_url: Option<String>,
    pub mail_from: String,
    /// Consume meeting events into billing and reports on this node.
    pub billing: bool,
    /// The SIP gateway, None when turned off (`--no-sip`).
    pub sip: Option<SipSettings>,
}

/// Where the SIP gateway listens.
#[derive(Debug, Clone, PartialEq)]
pub struct SipSettings {
    /// UDP and TCP.
    pub listen: SocketAddr,
    /// Whether `listen` was chosen by the operator (a bind failure is then fatal) or is the default
    /// (then it is logged and the server runs without the gateway, so several servers on one host,
    /// as the end-to-end tests start them, do not fight over port 5060).
    pub listen_explicit: bool,
    /// SIP over TLS.
    pub tls: SocketAddr,
    pub tls_explicit: bool,
    /// PEM certificate chain and key for TLS; None: self-signed, generated into the data directory.
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    pub rtp_ports: PortRange,
    /// The address put in SDP, Contact and Via.
    pub public_ip: IpAddr,
}

/// Default SIP ports (RFC 3261).
pub const SIP_PORT: u16 = 5060;
pub const SIP_TLS_PORT: u16 = 5061;
/// Default RTP ports of gateway calls (four per call: audio and video, RTP and RTCP).
pub const SIP_RTP_PORTS: PortRange = PortRange {
    lo: 20000,
    hi: 20999,
};

/// Sender of e-mails unless configured.
pub const DEFAULT_MAIL_FROM: &str = "Convene <noreply@convene.invalid>";

impl Default for ServeConfig {
    fn default() -> Self {
        let http: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
        Self {
            data_dir: PathBuf::from("data"),
            database_url: None,
            http,
            public_ip: http.ip(),
            media_ports: PortRange {
                lo: 16384,
                hi: 17383,
            },
            media_workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            media_fast_path: true,
            media_realtime_priority: None,
            public_url: format!("http://{http}"),
            smtp_url: None,
            mail_from: DEFAULT_MAIL_FROM.into(),
            billing: true,
            sip: Some(SipSettings {
                listen: SocketAddr::new(http.ip(), SIP_PORT),
                listen_explicit: false,
                tls: SocketAddr::new(http.ip(), SIP_TLS_PORT),
                tls_explicit: false,
                tls_cert: None,
                rtp_ports: SIP_RTP_PORTS,
                public_ip: http.ip(),
            }),
        }
    }
}

/// An inclusive UDP port range written `LO-HI`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not LO-HI"))?;
        let lo: u16 = lo
            .trim()
            .parse()
            .map_err(|_| format!("{lo:?} is not a port"))?;
        let hi: u16 = hi
            .trim()
            .parse()
            .map_err(|_| format!("{hi:?} is not a port"))?;
        if lo == 0 || lo > hi {
            return Err(format!("{s:?} is not a range of ports (1-65535, LO <= HI)"));
        }
        Ok(Self { lo, hi })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub http: Option<SocketAddr>,
    pub public_ip: Option<IpAddr>,
    pub media_ports: Option<PortRange>,
    pub media_workers: Option<usize>,
    pub media_fast_path: Option<bool>,
    pub media_realtime_priority: Option<u8>,
    pub public_url: Option<String>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub billing: Option<bool>,
    pub sip: Option<SocketAddr>,
    pub sip_tls: Option<SocketAddr>,
    pub sip_tls_cert: Option<PathBuf>,
    pub sip_tls_key: Option<PathBuf>,
    pub sip_rtp_ports: Option<PortRange>,
    pub sip_public_ip: Option<IpAddr>,
    pub no_sip: Option<bool>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }
}

/// Settings given on the command line or in the environment (clap merges those two).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (see config/convene.toml for every key, commented).
    #[arg(long, env = "CONVENE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for Convene's state [default: ./data].
    #[arg(long, env = "CONVENE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database for the control plane: postgres://USER@HOST/DB [default: SQLite in the data directory].
    #[arg(long, env = "CONVENE_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Address of the HTTP listener: web app, signaling, health and metrics [default: 127.0.0.1:8080].
    #[arg(long, env = "CONVENE_HTTP", value_name = "ADDR:PORT")]
    pub http: Option<SocketAddr>,
    /// Address clients send media to, put in ICE candidates [default: the --http address's IP].
    #[arg(long, env = "CONVENE_PUBLIC_IP", value_name = "IP")]
    pub public_ip: Option<IpAddr>,
    /// UDP ports for media; each media worker takes one [default: 16384-17383].
    #[arg(long, env = "CONVENE_MEDIA_PORTS", value_name = "LO-HI")]
    pub media_ports: Option<PortRange>,
    /// Number of media worker threads [default: one per core].
    #[arg(long, env = "CONVENE_MEDIA_WORKERS", value_name = "N")]
    pub media_workers: Option<usize>,
    /// Send subscribers' media on the fast path (Convene's own RTP, SRTP, congestion control, probing,
    /// retransmissions and sender reports) rather than through str0m; false falls back to str0m's
    /// [default: true].
    #[arg(long, env = "CONVENE_MEDIA_FAST_PATH", value_name = "BOOL")]
    pub media_fast_path: Option<bool>,
    /// Run the media worker threads under SCHED_FIFO at this priority (1-99), so nothing of ordinary
    /// priority on the machine preempts them while media waits; needs CAP_SYS_NICE or LimitRTPRIO
    /// (without, they run as usual and the log says so); leave a core to the rest with --media-workers
    /// [default: ordinary scheduling].
    #[arg(long, env = "CONVENE_MEDIA_REALTIME_PRIORITY", value_name = "1-99",
          value_parser = clap::value_parser!(u8).range(1..=99))]
    pub media_realtime_priority: Option<u8>,
    /// Base URL users open, for links in e-mails; https:// also marks cookies Secure
    /// [default: http://<the --http address>].
    #[arg(long, env = "CONVENE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Deliver e-mail over SMTP, e.g. smtp://relay:25, smtp://host:587?tls=required,
    /// smtps://user:pass@host:465 [default: write .eml files to <data-dir>/outbox/].
    #[arg(long, env = "CONVENE_SMTP_URL", value_name = "URL")]
    pub smtp_url: Option<String>,
    /// Sender of e-mails [default: "Convene <noreply@convene.invalid>"].
    #[arg(long, env = "CONVENE_MAIL_FROM", value_name = "MAILBOX")]
    pub mail_from: Option<String>,
    /// Consume meeting events into billing and reports on this node (false on media-only nodes;
    /// events stay in the journal until a node with billing on reads them) [default: true].
    #[arg(long, env = "CONVENE_BILLING", value_name = "BOOL")]
    pub billing: Option<bool>,
    /// SIP gateway address, UDP and TCP, for room systems [default: the --http IP, port 5060].
    #[arg(long, env = "CONVENE_SIP", value_name = "ADDR:PORT")]
    pub sip: Option<SocketAddr>,
    /// SIP over TLS address [default: the --http IP, port 5061].
    #[arg(long, env = "CONVENE_SIP_TLS", value_name = "ADDR:PORT")]
    pub sip_tls: Option<SocketAddr>,
    /// PEM certificate (chain) for SIP over TLS, with --sip-tls-key
    /// [default: self-signed, generated into <data-dir>/sip-tls/].
    #[arg(long, env = "CONVENE_SIP_TLS_CERT", value_name = "FILE")]
    pub sip_tls_cert: Option<PathBuf>,
    /// PEM private key of --sip-tls-cert.
    #[arg(long, env = "CONVENE_SIP_TLS_KEY", value_name = "FILE")]
    pub sip_tls_key: Option<PathBuf>,
    /// UDP ports for SIP calls' RTP, four per call (audio, video and their RTCP) [default: 20000-20999].
    #[arg(long, env = "CONVENE_SIP_RTP_PORTS", value_name = "LO-HI")]
    pub sip_rtp_ports: Option<PortRange>,
    /// Address put in SIP Contact/Via and SDP [default: --public-ip].
    #[arg(long, env = "CONVENE_SIP_PUBLIC_IP", value_name = "IP")]
    pub sip_public_ip: Option<IpAddr>,
    /// Turn the SIP gateway off.
    #[arg(long, env = "CONVENE_NO_SIP")]
    pub no_sip: bool,
}

impl ServeArgs {
    /// Resolve flags + environment over the config file over the defaults.
    pub fn resolve(&self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let defaults = ServeConfig::default();
        let http = self.http.or(file.http).unwrap_or(defaults.http);
        // The public IP follows the HTTP address unless set: one knob for the common single-host case.
        let public_ip = self.public_ip.or(file.public_ip).unwrap_or(http.ip());
        if public_ip.is_unspecified() {
            bail!(
                "the media address {public_ip} cannot go into ICE candidates: set --public-ip to an address clients can reach"
            );
        }
        let media_workers = self
            .media_workers
            .or(file.media_workers)
            .unwrap_or(defaults.media_workers);
        let media_realtime_priority = self
            .media_realtime_priority
            .or(file.media_realtime_priority)
            .or(defaults.media_realtime_priority);
        if let Some(p) = media_realtime_priority
            && !(1..=99).contains(&p)
        {
            bail!("media_realtime_priority must be 1-99, not {p}");
        }
        if media_workers == 0 || media_workers > 256 {
            bail!("media workers must be 1-256, not {media_workers}");
        }
        let media_ports = self
            .media_ports
            .or(file.media_ports)
            .unwrap_or(defaults.media_ports);
        if usize::from(media_ports.hi - media_ports.lo) + 1 < media_workers {
            bail!(
                "media ports {}-{} are fewer than the {media_workers} media workers",
                media_ports.lo,
                media_ports.hi
            );
        }
        let public_url = self
            .public_url
            .clone()
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{http}"));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("the public URL {public_url:?} must start with http:// or https://");
        }
        let public_url = public_url.trim_end_matches('/').to_owned();
        let no_sip = self.no_sip || file.no_sip.unwrap_or(false);
        let sip = if no_sip {
            None
        } else {
            let listen = self.sip.or(file.sip);
            let tls = self.sip_tls.or(file.sip_tls);
            let sip_public_ip = self
                .sip_public_ip
                .or(file.sip_public_ip)
                .unwrap_or(public_ip);
            if sip_public_ip.is_unspecified() {
                bail!("the SIP public IP {sip_public_ip} cannot go into SDP: set --sip-public-ip");
            }
            let tls_cert = match (
                self.sip_tls_cert.clone().or(file.sip_tls_cert),
                self.sip_tls_key.clone().or(file.sip_tls_key),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => bail!("--sip-tls-cert and --sip-tls-key go together"),
            };
            let rtp_ports = self
                .sip_rtp_ports
                .or(file.sip_rtp_ports)
                .unwrap_or(SIP_RTP_PORTS);
            Some(SipSettings {
                listen: listen.unwrap_or(SocketAddr::new(http.ip(), SIP_PORT)),
                listen_explicit: listen.is_some(),
                tls: tls.unwrap_or(SocketAddr::new(http.ip(), SIP_TLS_PORT)),
                tls_explicit: tls.is_some(),
                tls_cert,
                rtp_ports,
                public_ip: sip_public_ip,
            })
        };
        Ok(ServeConfig {
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(defaults.data_dir),
            database_url: self.database_url.clone().or(file.database_url),
            http,
            public_ip,
            media_ports,
            media_workers,
            media_fast_path: self
                .media_fast_path
                .or(file.media_fast_path)
                .unwrap_or(defaults.media_fast_path),
            media_realtime_priority,
            public_url,
            smtp_url: self.smtp_url.clone().or(file.smtp_url),
            mail_from: self
                .mail_from
                .clone()
                .or(file.mail_from)
                .unwrap_or(defaults.mail_from),
            billing: self.billing.or(file.billing).unwrap_or(defaults.billing),
            sip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.http, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.public_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            c.media_ports,
            PortRange {
                lo: 16384,
                hi: 17383
            }
        );
        assert!(c.media_workers >= 1);
        let sip = c.sip.unwrap();
        assert_eq!(sip.listen, "127.0.0.1:5060".parse().unwrap());
        assert!(!sip.listen_explicit);
        assert_eq!(sip.tls, "127.0.0.1:5061".parse().unwrap());
        assert_eq!(
            sip.rtp_ports,
            PortRange {
                lo: 20000,
                hi: 20999
            }
        );
    }

    #[test]
    fn sip_flags() {
        let args = ServeArgs {
            http: Some("127.0.0.2:9000".parse().unwrap()),
            sip: Some("127.0.0.3:5070".parse().unwrap()),
            sip_rtp_ports: Some(PortRange {
                lo: 30000,
                hi: 30010,
            }),
            ..Default::default()
        };
        let sip = args.resolve().unwrap().sip.unwrap();
        assert_eq!(sip.listen, "127.0.0.3:5070".parse().unwrap());
        assert!(sip.listen_explicit);
        assert_eq!(sip.tls, "127.0.0.2:5061".parse().unwrap());
        assert_eq!(sip.public_ip, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            sip.rtp_ports,
            PortRange {
                lo: 30000,
                hi: 30010
            }
        );
        let off = ServeArgs {
            no_sip: true,
            ..Default::default()
        };
        assert_eq!(off.resolve().unwrap().sip, None);
        let half = ServeArgs {
            sip_tls_cert: Some("cert.pem".into()),
            ..Default::default()
        };
        assert!(
            half.resolve()
                .unwrap_err()
                .to_string()
                .contains("--sip-tls-key")
        );
        let both = ServeArgs {
            sip_tls_cert: Some("c.pem".into()),
            sip_tls_key: Some("k.pem".into()),
            ..Default::default()
        };
        assert_eq!(
            both.resolve().unwrap().sip.unwrap().tls_cert,
            Some(("c.pem".into(), "k.pem".into()))
        );
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("convene-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "http = \"127.0.0.2:9000\"\nmedia_ports = \"20000-20010\"\nmedia_workers = 2\n\
             media_realtime_priority = 20\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            media_workers: Some(3),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.http, "127.0.0.2:9000".parse().unwrap());
        assert_eq!(c.public_ip, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            c.media_ports,
            PortRange {
                lo: 20000,
                hi: 20010
            }
        );
        assert_eq!(c.media_workers, 3);
        assert_eq!(c.media_realtime_priority, Some(20));
        let flag = ServeArgs {
            config: Some(path.clone()),
            media_realtime_priority: Some(5),
            ..Default::default()
        };
        assert_eq!(flag.resolve().unwrap().media_realtime_priority, Some(5));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_shipped_config_file_parses_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/convene.toml");
        let file = FileConfig::load(&path).unwrap();
        let d = ServeConfig::default();
        assert_eq!(file.http.unwrap_or(d.http), d.http);
        assert_eq!(file.media_ports.unwrap_or(d.media_ports), d.media_ports);
        assert_eq!(file.sip_rtp_ports.unwrap_or(SIP_RTP_PORTS), SIP_RTP_PORTS);
        assert_eq!(file.no_sip, None);
        assert_eq!(file.media_realtime_priority, d.media_realtime_priority);
    }

    #[test]
    fn bad_values_are_refused_clearly() {
        assert!("10-5".parse::<PortRange>().is_err());
        assert!("0-5".parse::<PortRange>().is_err());
        assert!("abc".parse::<PortRange>().is_err());
        let args = ServeArgs {
            http: Some("0.0.0.0:8080".parse().unwrap()),
            ..Default::default()
        };
        assert!(
            args.resolve()
                .unwrap_err()
                .to_string()
                .contains("--public-ip")
        );
        let args = ServeArgs {
            media_ports: Some(PortRange { lo: 5000, hi: 5001 }),
            media_workers: Some(4),
            ..Default::default()
        };
        assert!(args.resolve().is_err());
        let dir = std::env::temp_dir().join(format!("convene-config-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "media_realtime_priority = 0\n").unwrap();
        let err = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("1-99"), "{err:#}");
        std::fs::write(&path, "htpp = \"127.0.0.1:1\"\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("htpp"), "{err:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
