//! twinmasq's own options: the failover pair, the control socket and the
//! metrics listener.
//! dnsmasq has none of these, so their syntax follows dnsmasq's habits
//! (`addr,port` pairs, durations with an optional s/m/h suffix).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::error::FieldError;
use super::value::{parse_duration, parse_u32, split_fields};

pub const DEFAULT_CONTROL_SOCKET: &str = "/run/twinmasq.sock";
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
pub const DEFAULT_LINK_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence allowed while a sync is under way, when the partner may be busy
/// merging or reading a whole table (Kea's HA `sync-timeout`, the same 60 s).
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SPLIT_PERCENT: u8 = 50;
pub const DEFAULT_MCLT: Duration = Duration::from_secs(3600);
/// Clock skew above which the link refuses to run: the newer-wins merge
/// trusts both clocks to this degree.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(30);
/// A client whose `secs` field reaches this while the primary is linked is
/// taken to be unanswered by it (Kea's max-ack-delay).
pub const DEFAULT_UNANSWERED_SECS: u16 = 10;

/// Which end of the link this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverRole {
    /// `failover-listen=[ADDR,]PORT`
    Primary { listen: SocketAddr },
    /// `failover-master=ADDR,PORT`
    Secondary { master: SocketAddr },
}

/// Settings as given, before the check that they make a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailoverOptions {
    pub listen: Option<SocketAddr>,
    pub master: Option<SocketAddr>,
    pub key_file: Option<PathBuf>,
    pub heartbeat: Option<Duration>,
    pub timeout: Option<Duration>,
    pub sync_timeout: Option<Duration>,
    pub split_percent: Option<u8>,
    pub mclt: Option<Duration>,
    pub auto_partner_down: Option<Duration>,
    pub max_skew: Option<Duration>,
    pub unanswered_secs: Option<u16>,
}

/// A failover setup that makes sense: a role, a key, and the timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverConfig {
    pub role: FailoverRole,
    pub key_file: PathBuf,
    pub heartbeat: Duration,
    pub timeout: Duration,
    /// Replaces `timeout` while a sync is under way (never shorter).
    pub sync_timeout: Duration,
    /// Percent of each range's addresses owned by the secondary.
    pub split_percent: u8,
    pub mclt: Duration,
    /// Declare the partner down by itself after this long unlinked.
    pub auto_partner_down: Option<Duration>,
    pub max_skew: Duration,
    pub unanswered_secs: u16,
}

impl FailoverOptions {
    /// `None` when failover is not configured. Errors name what is missing
    /// or contradictory.
    pub fn resolve(&self) -> Result<Option<FailoverConfig>, String> {
        let role = match (self.listen, self.master) {
            (Some(_), Some(_)) => {
                return Err(
                    "failover-listen and failover-master both given: a node is either the primary or the secondary"
                        .into(),
                )
            }
            (Some(listen), None) => FailoverRole::Primary { listen },
            (None, Some(master)) => FailoverRole::Secondary { master },
            (None, None) => {
                let given = [
                    (self.key_file.is_some(), "failover-key"),
                    (self.heartbeat.is_some(), "failover-heartbeat"),
                    (self.timeout.is_some(), "failover-timeout"),
                    (self.sync_timeout.is_some(), "failover-sync-timeout"),
                    (self.split_percent.is_some(), "failover-split"),
                    (self.mclt.is_some(), "failover-mclt"),
                    (self.auto_partner_down.is_some(), "failover-auto-partner-down"),
                    (self.max_skew.is_some(), "failover-max-skew"),
                    (self.unanswered_secs.is_some(), "failover-unanswered-secs"),
                ];
                if let Some((_, name)) = given.iter().find(|(set, _)| *set) {
                    return Err(format!(
                        "{name} given without failover-listen or failover-master"
                    ));
                }
                return Ok(None);
            }
        };
        let Some(key_file) = self.key_file.clone() else {
            return Err(
                "the failover link refuses to run without failover-key=FILE (make one with `twinmasq failover gen-key`)"
                    .into(),
            );
        };
        let heartbeat = self.heartbeat.unwrap_or(DEFAULT_HEARTBEAT);
        let timeout = self.timeout.unwrap_or(DEFAULT_LINK_TIMEOUT);
        if timeout <= heartbeat {
            return Err(format!(
                "failover-timeout ({}ms) must be longer than failover-heartbeat ({}ms)",
                timeout.as_millis(),
                heartbeat.as_millis()
            ));
        }
        Ok(Some(FailoverConfig {
            role,
            key_file,
            heartbeat,
            timeout,
            sync_timeout: self
                .sync_timeout
                .unwrap_or(DEFAULT_SYNC_TIMEOUT)
                .max(timeout),
            split_percent: self.split_percent.unwrap_or(DEFAULT_SPLIT_PERCENT),
            mclt: self.mclt.unwrap_or(DEFAULT_MCLT),
            auto_partner_down: self.auto_partner_down,
            max_skew: self.max_skew.unwrap_or(DEFAULT_MAX_SKEW),
            unanswered_secs: self.unanswered_secs.unwrap_or(DEFAULT_UNANSWERED_SECS),
        }))
    }
}

/// `500ms`, or a dnsmasq duration (`30`, `30s`, `5m`, `1h`, ...).
pub(crate) fn duration(v: &str) -> Result<Duration, FieldError> {
    let v = v.trim();
    let parsed = match v.strip_suffix("ms") {
        Some(ms) => parse_u32(ms).map(|n| Duration::from_millis(u64::from(n))),
        None => parse_duration(v).map(|s| Duration::from_secs(u64::from(s))),
    };
    match parsed {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err(FieldError::bad("a duration of zero")),
        None => Err(FieldError::bad(format!(
            "'{v}' is not a duration (like 500ms, 5, 5s, 10m or 1h)"
        ))),
    }
}

fn port(v: &str) -> Result<u16, FieldError> {
    match v.trim().parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(FieldError::bad(format!("'{v}' is not a port number"))),
    }
}

fn address(v: &str) -> Result<IpAddr, FieldError> {
    v.trim()
        .parse()
        .map_err(|_| FieldError::bad(format!("'{v}' is not an IP address")))
}

/// `failover-listen=[ADDR,]PORT`; without an address, every IPv4 address
/// (as dnsmasq's own listeners default to every address). Kept so existing
/// configs start, with a warning at start (`failover::setup`): the
/// partner-facing address is the one to give.
pub(crate) fn listen(v: &str) -> Result<SocketAddr, FieldError> {
    match split_fields(v).as_slice() {
        [p] => Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port(p)?)),
        [a, p] => Ok(SocketAddr::new(address(a)?, port(p)?)),
        _ => Err(FieldError::bad("expected [ADDR,]PORT")),
    }
}

/// `failover-master=ADDR,PORT`
pub(crate) fn master(v: &str) -> Result<SocketAddr, FieldError> {
    match split_fields(v).as_slice() {
        [a, p] => Ok(SocketAddr::new(address(a)?, port(p)?)),
        _ => Err(FieldError::bad("expected ADDR,PORT")),
    }
}

/// `metrics-listen=ADDR:PORT` (`[V6]:PORT` for IPv6), or dnsmasq's habit
/// `ADDR,PORT`. An address is required: metrics are not meant for every
/// interface by accident.
pub(crate) fn metrics_listen(v: &str) -> Result<SocketAddr, FieldError> {
    let v = v.trim();
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return match addr.port() {
            0 => Err(FieldError::bad(format!("'{v}': port 0"))),
            _ => Ok(addr),
        };
    }
    match split_fields(v).as_slice() {
        [a, p] => Ok(SocketAddr::new(address(a)?, port(p)?)),
        _ => Err(FieldError::bad(format!(
            "'{v}' is not ADDR:PORT (like 127.0.0.1:9153)"
        ))),
    }
}

pub(crate) fn percent(v: &str) -> Result<u8, FieldError> {
    match parse_u32(v.trim()) {
        Some(n) if n <= 100 => Ok(n as u8),
        _ => Err(FieldError::bad(format!(
            "'{v}' is not a percentage (0 to 100)"
        ))),
    }
}

pub(crate) fn secs(v: &str) -> Result<u16, FieldError> {
    match parse_u32(v.trim()) {
        Some(n) if n > 0 && n <= u32::from(u16::MAX) => Ok(n as u16),
        _ => Err(FieldError::bad(format!(
            "'{v}' is not a number of seconds (1 to 65535)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary() -> FailoverOptions {
        FailoverOptions {
            listen: Some(listen("647").unwrap()),
            key_file: Some("/etc/twinmasq/key".into()),
            ..Default::default()
        }
    }

    #[test]
    fn address_forms() {
        assert_eq!(listen("647").unwrap(), "0.0.0.0:647".parse().unwrap());
        assert_eq!(
            listen("198.18.0.1,647").unwrap(),
            "198.18.0.1:647".parse().unwrap()
        );
        assert_eq!(
            master("198.18.0.1,647").unwrap(),
            "198.18.0.1:647".parse().unwrap()
        );
        assert!(master("647").is_err());
        assert!(listen("x,647").is_err());
        assert!(listen("0").is_err());
    }

    #[test]
    fn metrics_listen_forms() {
        let want: SocketAddr = "198.18.0.1:9153".parse().unwrap();
        assert_eq!(metrics_listen("198.18.0.1:9153").unwrap(), want);
        assert_eq!(metrics_listen("198.18.0.1,9153").unwrap(), want);
        assert_eq!(
            metrics_listen("[::1]:9153").unwrap(),
            "[::1]:9153".parse().unwrap()
        );
        for bad in ["9153", "198.18.0.1:0", "host:9153", "198.18.0.1", ""] {
            assert!(metrics_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(duration("0").is_err());
        assert!(duration("soon").is_err());
    }

    #[test]
    fn defaults_fill_in() {
        let c = primary().resolve().unwrap().unwrap();
        assert_eq!(c.heartbeat, DEFAULT_HEARTBEAT);
        assert_eq!(c.timeout, DEFAULT_LINK_TIMEOUT);
        assert_eq!(c.sync_timeout, DEFAULT_SYNC_TIMEOUT);
        assert_eq!(c.split_percent, 50);
        // Never shorter than the link timeout it stands in for.
        let short = FailoverOptions {
            timeout: Some(Duration::from_secs(90)),
            sync_timeout: Some(Duration::from_secs(10)),
            ..primary()
        };
        assert_eq!(
            short.resolve().unwrap().unwrap().sync_timeout,
            Duration::from_secs(90)
        );
        assert_eq!(c.mclt, DEFAULT_MCLT);
        assert!(c.auto_partner_down.is_none());
    }

    #[test]
    fn contradictions_are_named() {
        assert_eq!(FailoverOptions::default().resolve(), Ok(None));
        let no_key = FailoverOptions {
            key_file: None,
            ..primary()
        };
        assert!(no_key.resolve().unwrap_err().contains("failover-key"));
        let both = FailoverOptions {
            master: Some(master("198.18.0.1,647").unwrap()),
            ..primary()
        };
        assert!(both.resolve().unwrap_err().contains("either"));
        let orphan = FailoverOptions {
            mclt: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        assert!(orphan.resolve().unwrap_err().contains("failover-mclt"));
        let slow = FailoverOptions {
            heartbeat: Some(Duration::from_secs(5)),
            timeout: Some(Duration::from_secs(5)),
            ..primary()
        };
        assert!(slow.resolve().unwrap_err().contains("longer"));
    }
}
