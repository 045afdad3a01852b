//! The pure half of `dhcp-script`: which lease changes run the script with
//! which action, and the arguments and environment of each run. No I/O here:
//! the runner hands in records and the few facts from outside (interface
//! name, clock), and gets back what to execute.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use twinmasq_proto::{Expiry, LeaseRecord, LeaseState};

use crate::lease::hw::{colon_hex, hw_text};

/// Every variable we may set. Those not set for a run are removed from the
/// inherited environment, as dnsmasq's helper unsets them, so a variable
/// the server itself was started with never reaches the script as if it
/// described the lease.
pub const MANAGED_VARS: &[&str] = &[
    "DNSMASQ_CLIENT_ID",
    "DNSMASQ_INTERFACE",
    "DNSMASQ_LEASE_EXPIRES",
    "DNSMASQ_DOMAIN",
    "DNSMASQ_TIME_REMAINING",
    "DNSMASQ_OLD_HOSTNAME",
    "DNSMASQ_LOG_DHCP",
    "DNSMASQ_DATA_MISSING",
    // Never set (see the module docs of `crate::script`), still cleared.
    "DNSMASQ_LEASE_LENGTH",
    "DNSMASQ_SUPPLIED_HOSTNAME",
    "DNSMASQ_TAGS",
    "DNSMASQ_RELAY_ADDRESS",
    "DNSMASQ_VENDOR_CLASS",
    "DNSMASQ_REQUESTED_OPTIONS",
    "DNSMASQ_CIRCUIT_ID",
    "DNSMASQ_SUBSCRIBER_ID",
    "DNSMASQ_REMOTE_ID",
    "DNSMASQ_MUD_URL",
    "DNSMASQ_CPEWAN_OUI",
    "DNSMASQ_CPEWAN_SERIAL",
    "DNSMASQ_CPEWAN_CLASS",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Old,
    Del,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Old => "old",
            Action::Del => "del",
        }
    }
}

/// One run of the script, decided from the lease table's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    /// The lease as the script is told about it: for `del`, the lease as it
    /// was last reported (a release drops the name from the stored record,
    /// yet dnsmasq passes the name of the lease that ended).
    pub lease: LeaseRecord,
    /// An `old` that announces the loss of this name: no hostname argument,
    /// `DNSMASQ_OLD_HOSTNAME` set (dnsmasq's ACTION_OLD_HOSTNAME).
    pub lost_name: Option<String>,
}

impl Change {
    fn new(action: Action, lease: LeaseRecord) -> Change {
        Change {
            action,
            lease,
            lost_name: None,
        }
    }
}

/// What the script was last told, per address: only bound leases are kept,
/// so the map is as large as the bound part of the table (a record each,
/// and only when `dhcp-script` is set). After the runner misses feed
/// records (lag), an entry may be stale: a missed end followed by a lease
/// for another client shows as `del` then `add`, but one missed while the
/// same client left and came back goes unreported.
pub struct Tracker {
    on_renewal: bool,
    reported: HashMap<Ipv4Addr, LeaseRecord>,
}

impl Tracker {
    /// `on_renewal`: `script-on-renewal`, a new expiry alone runs `old`.
    pub fn new(on_renewal: bool) -> Tracker {
        Tracker {
            on_renewal,
            reported: HashMap::new(),
        }
    }

    /// The table as found at start: `old` for each bound lease, `del` for
    /// each bound lease whose time ran out while we were down (dnsmasq does
    /// the same with its lease file). Ended records were already reported
    /// by whoever ended them.
    pub fn startup(
        &mut self,
        records: impl IntoIterator<Item = LeaseRecord>,
        now_secs: u64,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for rec in records {
            if rec.state != LeaseState::Bound {
                continue;
            }
            // Not remembered when past: its expiry, when the sweep stores
            // it, is then an ended record replacing nothing, and stays quiet.
            let action = if rec.expires.is_past(now_secs) {
                Action::Del
            } else {
                self.reported.insert(rec.ip, rec.clone());
                Action::Old
            };
            out.push(Change::new(action, rec));
        }
        out
    }

    /// The whole table after falling behind the feed: the runs the missed
    /// changes would have caused, as one step from what was reported to
    /// what the table holds (a lease that came and went unseen runs
    /// nothing; one the table lost runs `del`).
    pub fn resync(&mut self, records: Vec<LeaseRecord>) -> Vec<Change> {
        let present: std::collections::HashSet<Ipv4Addr> = records.iter().map(|r| r.ip).collect();
        let mut lost: Vec<Ipv4Addr> = self
            .reported
            .keys()
            .filter(|ip| !present.contains(ip))
            .copied()
            .collect();
        lost.sort_unstable();
        let mut out = Vec::new();
        for ip in lost {
            if let Some(prev) = self.reported.remove(&ip) {
                out.push(Change::new(Action::Del, prev));
            }
        }
        for rec in records {
            out.extend(self.observe(rec));
        }
        out
    }

    /// One record from the change feed: the runs it causes, in order.
    pub fn observe(&mut self, rec: LeaseRecord) -> Vec<Change> {
        let bound = rec.state == LeaseState::Bound;
        let prev = if bound {
            self.reported.insert(rec.ip, rec.clone())
        } else {
            self.reported.remove(&rec.ip)
        };
        match (prev, bound) {
            (None, false) => vec![],
            (Some(prev), false) => vec![Change::new(Action::Del, prev)],
            (None, true) => vec![Change::new(Action::Add, rec)],
            // The address went to another client without a visible end
            // (a failover merge, a takeover): one lease ended, one began.
            (Some(prev), true) if prev.client != rec.client => vec![
                Change::new(Action::Del, prev),
                Change::new(Action::Add, rec),
            ],
            (Some(prev), true) => {
                let mut out = Vec::new();
                if prev.hostname.is_some() && prev.hostname != rec.hostname {
                    // dnsmasq announces the loss of a name before its new
                    // state, with the lease as it stands otherwise.
                    out.push(Change {
                        lost_name: prev.hostname.clone(),
                        ..Change::new(
                            Action::Old,
                            LeaseRecord {
                                hostname: None,
                                ..rec.clone()
                            },
                        )
                    });
                    if rec.hostname.is_some() {
                        out.push(Change::new(Action::Old, rec));
                    }
                    return out;
                }
                let changed = prev.hostname != rec.hostname
                    || prev.hwaddr != rec.hwaddr
                    || prev.htype != rec.htype
                    || (self.on_renewal && prev.expires != rec.expires);
                if changed {
                    out.push(Change::new(Action::Old, rec));
                }
                out
            }
        }
    }

    /// Bound leases the script knows of.
    pub fn len(&self) -> usize {
        self.reported.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reported.is_empty()
    }
}

/// What a run needs from outside the record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The domain `domain=` gives the lease's address, if any.
    pub domain: Option<String>,
    /// The local interface on the lease's subnet (None for relayed leases).
    pub interface: Option<String>,
    /// `log-dhcp` is on.
    pub log_dhcp: bool,
    pub now_secs: u64,
}

/// The arguments (after the program name) and the variables to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
}

impl Invocation {
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn invocation(change: &Change, ctx: &Context) -> Invocation {
    let lease = &change.lease;
    let mut args = vec![
        change.action.as_str().to_string(),
        hw_text(lease.htype, &lease.hwaddr),
        lease.ip.to_string(),
    ];
    let mut env: Vec<(&'static str, String)> = Vec::new();
    // The name the run is about: the one lost for that kind of `old`.
    let name = change.lost_name.as_ref().or(lease.hostname.as_ref());
    match &change.lost_name {
        Some(lost) => env.push(("DNSMASQ_OLD_HOSTNAME", lost.clone())),
        None => {
            if let Some(h) = &lease.hostname {
                args.push(h.clone());
            }
        }
    }
    // dnsmasq sets the domain from the lease's fully qualified name, which
    // exists only when the lease has a name.
    if let (Some(_), Some(domain)) = (name, &ctx.domain) {
        env.push(("DNSMASQ_DOMAIN", domain.clone()));
    }
    if let Some(id) = &lease.client_id {
        env.push(("DNSMASQ_CLIENT_ID", colon_hex(id)));
    }
    if let Some(ifname) = &ctx.interface {
        env.push(("DNSMASQ_INTERFACE", ifname.clone()));
    }
    env.push((
        "DNSMASQ_LEASE_EXPIRES",
        lease.expires.as_lease_file_secs().to_string(),
    ));
    // Not for `del`, nor for an infinite lease (dnsmasq's remaining time
    // is 0 there and then it leaves the variable out).
    if change.action != Action::Del {
        if let Expiry::At(t) = lease.expires {
            let left = t.saturating_sub(ctx.now_secs);
            if left > 0 {
                env.push(("DNSMASQ_TIME_REMAINING", left.to_string()));
            }
        }
    }
    // The request's details (tags, classes, supplied name...) are never
    // here. dnsmasq 2.90 has them only in the run right after the request,
    // which for a lease that stays is its `add`: from then on, and at
    // start, it says DATA_MISSING. Scripts use it to tell a replayed lease
    // from a new one, so `add` goes without it here as there.
    if change.action != Action::Add {
        env.push(("DNSMASQ_DATA_MISSING", "1".into()));
    }
    if ctx.log_dhcp {
        env.push(("DNSMASQ_LOG_DHCP", "1".into()));
    }
    Invocation { args, env }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinmasq_proto::{ClientKey, Stamp};

    const MAC: [u8; 6] = [0x02, 0xab, 0x00, 0x10, 0x20, 0xff];

    fn bound(ip: [u8; 4], name: Option<&str>, expires: u64) -> LeaseRecord {
        LeaseRecord {
            ip: Ipv4Addr::from(ip),
            state: LeaseState::Bound,
            client: ClientKey::from_hwaddr(1, &MAC),
            htype: 1,
            hwaddr: MAC.to_vec(),
            client_id: None,
            hostname: name.map(String::from),
            expires: Expiry::At(expires),
            stamp: Stamp::default(),
        }
    }

    fn ended(rec: &LeaseRecord, state: LeaseState) -> LeaseRecord {
        LeaseRecord {
            state,
            hostname: None,
            ..rec.clone()
        }
    }

    fn actions(changes: &[Change]) -> Vec<Action> {
        changes.iter().map(|c| c.action).collect()
    }

    fn ctx() -> Context {
        Context {
            domain: Some("lab.test".into()),
            interface: Some("eth1".into()),
            log_dhcp: false,
            now_secs: 1_000,
        }
    }

    #[test]
    fn new_lease_is_add_and_its_release_is_del_with_the_reported_name() {
        let mut t = Tracker::new(false);
        let rec = bound([198, 18, 0, 100], Some("laptop"), 4_600);
        let add = t.observe(rec.clone());
        assert_eq!(actions(&add), [Action::Add]);
        assert_eq!(add[0].lease, rec);
        let del = t.observe(ended(&rec, LeaseState::Released));
        assert_eq!(actions(&del), [Action::Del]);
        assert_eq!(del[0].lease.hostname.as_deref(), Some("laptop"));
        assert!(t.is_empty());
        // Ending it again (expiry sweep, a merge) says nothing more.
        assert!(t.observe(ended(&rec, LeaseState::Expired)).is_empty());
    }

    #[test]
    fn expiry_and_decline_are_del() {
        for state in [LeaseState::Expired, LeaseState::Declined] {
            let mut t = Tracker::new(false);
            let rec = bound([198, 18, 0, 100], None, 4_600);
            t.observe(rec.clone());
            assert_eq!(actions(&t.observe(ended(&rec, state))), [Action::Del]);
        }
    }

    #[test]
    fn renewal_is_silent_unless_script_on_renewal() {
        let rec = bound([198, 18, 0, 100], Some("laptop"), 4_600);
        let renewed = LeaseRecord {
            expires: Expiry::At(5_000),
            ..rec.clone()
        };
        let mut quiet = Tracker::new(false);
        quiet.observe(rec.clone());
        assert!(quiet.observe(renewed.clone()).is_empty());
        // The same record again (a merge echo) is silent either way.
        let mut loud = Tracker::new(true);
        loud.observe(rec.clone());
        let old = loud.observe(renewed.clone());
        assert_eq!(actions(&old), [Action::Old]);
        assert_eq!(old[0].lease.expires, Expiry::At(5_000));
        assert!(loud.observe(renewed).is_empty());
    }

    #[test]
    fn name_or_mac_change_is_old_and_a_lost_name_is_announced_first() {
        let mut t = Tracker::new(false);
        let rec = bound([198, 18, 0, 100], None, 4_600);
        t.observe(rec.clone());
        let named = LeaseRecord {
            hostname: Some("a".into()),
            ..rec.clone()
        };
        assert_eq!(actions(&t.observe(named.clone())), [Action::Old]);

        let renamed = LeaseRecord {
            hostname: Some("b".into()),
            ..rec.clone()
        };
        let out = t.observe(renamed.clone());
        assert_eq!(actions(&out), [Action::Old, Action::Old]);
        assert_eq!(out[0].lost_name.as_deref(), Some("a"));
        assert_eq!(out[0].lease.hostname, None);
        assert_eq!(out[1].lease, renamed);

        let unnamed = t.observe(rec.clone());
        assert_eq!(actions(&unnamed), [Action::Old]);
        assert_eq!(unnamed[0].lost_name.as_deref(), Some("b"));

        let mut hw = rec.clone();
        hw.hwaddr[5] = 0x01;
        assert_eq!(actions(&t.observe(hw)), [Action::Old]);
    }

    #[test]
    fn address_taken_by_another_client_is_del_then_add() {
        let mut t = Tracker::new(false);
        let a = bound([198, 18, 0, 100], Some("a"), 4_600);
        t.observe(a.clone());
        let b = LeaseRecord {
            client: ClientKey::from_client_id(b"other"),
            hostname: Some("b".into()),
            ..a.clone()
        };
        let out = t.observe(b.clone());
        assert_eq!(actions(&out), [Action::Del, Action::Add]);
        assert_eq!(out[0].lease, a);
        assert_eq!(out[1].lease, b);
    }

    #[test]
    fn startup_reports_bound_as_old_and_overdue_as_del_once() {
        let mut t = Tracker::new(false);
        let live = bound([198, 18, 0, 100], Some("live"), 4_600);
        let overdue = bound([198, 18, 0, 101], Some("gone"), 900);
        let released = ended(&bound([198, 18, 0, 102], None, 900), LeaseState::Released);
        let out = t.startup([live.clone(), overdue.clone(), released], 1_000);
        assert_eq!(actions(&out), [Action::Old, Action::Del]);
        assert_eq!(t.len(), 1);
        // The sweep that stores the overdue lease's expiry adds nothing.
        assert!(t.observe(ended(&overdue, LeaseState::Expired)).is_empty());
        // A renewal of the live one after start is not an add.
        assert!(t.observe(live).is_empty());
    }

    #[test]
    fn mac_format_follows_dnsmasq() {
        assert_eq!(hw_text(1, &MAC), "02:ab:00:10:20:ff");
        assert_eq!(hw_text(6, &MAC), "06-02:ab:00:10:20:ff");
        assert_eq!(hw_text(32, &[0x0a; 3]), "20-0a:0a:0a");
        assert_eq!(hw_text(1, &[]), "01-");
    }

    #[test]
    fn add_invocation_has_args_and_environment() {
        let mut rec = bound([198, 18, 0, 100], Some("laptop"), 4_600);
        rec.client_id = Some(vec![1, 0x02, 0xab, 0, 0x10, 0x20, 0xff]);
        let inv = invocation(&Change::new(Action::Add, rec), &ctx());
        assert_eq!(
            inv.args,
            ["add", "02:ab:00:10:20:ff", "198.18.0.100", "laptop"]
        );
        assert_eq!(inv.var("DNSMASQ_DOMAIN"), Some("lab.test"));
        assert_eq!(inv.var("DNSMASQ_CLIENT_ID"), Some("01:02:ab:00:10:20:ff"));
        assert_eq!(inv.var("DNSMASQ_INTERFACE"), Some("eth1"));
        assert_eq!(inv.var("DNSMASQ_LEASE_EXPIRES"), Some("4600"));
        assert_eq!(inv.var("DNSMASQ_TIME_REMAINING"), Some("3600"));
        assert_eq!(inv.var("DNSMASQ_DATA_MISSING"), None);
        assert_eq!(inv.var("DNSMASQ_LOG_DHCP"), None);
        assert_eq!(inv.var("DNSMASQ_OLD_HOSTNAME"), None);
        for (k, _) in &inv.env {
            assert!(MANAGED_VARS.contains(k), "{k} is not cleared when unset");
        }
    }

    #[test]
    fn nameless_lease_has_no_fourth_argument_and_no_domain() {
        let inv = invocation(
            &Change::new(Action::Add, bound([198, 18, 0, 100], None, 4_600)),
            &ctx(),
        );
        assert_eq!(inv.args.len(), 3);
        assert_eq!(inv.var("DNSMASQ_DOMAIN"), None);
        assert_eq!(inv.var("DNSMASQ_CLIENT_ID"), None);
    }

    #[test]
    fn del_has_no_time_remaining_and_infinite_leases_neither() {
        let rec = bound([198, 18, 0, 100], Some("laptop"), 4_600);
        let del = invocation(&Change::new(Action::Del, rec.clone()), &ctx());
        assert_eq!(del.args[0], "del");
        assert_eq!(del.args[3], "laptop");
        assert_eq!(del.var("DNSMASQ_TIME_REMAINING"), None);
        assert_eq!(del.var("DNSMASQ_LEASE_EXPIRES"), Some("4600"));
        let forever = LeaseRecord {
            expires: Expiry::Never,
            ..rec
        };
        let old = invocation(&Change::new(Action::Old, forever), &ctx());
        assert_eq!(old.var("DNSMASQ_LEASE_EXPIRES"), Some("0"));
        assert_eq!(old.var("DNSMASQ_TIME_REMAINING"), None);
    }

    #[test]
    fn lost_name_data_missing_and_log_dhcp_variables() {
        let rec = bound([198, 18, 0, 100], None, 4_600);
        let lost = Change {
            lost_name: Some("was".into()),
            ..Change::new(Action::Old, rec.clone())
        };
        let inv = invocation(&lost, &ctx());
        assert_eq!(inv.args.len(), 3, "{:?}", inv.args);
        assert_eq!(inv.var("DNSMASQ_OLD_HOSTNAME"), Some("was"));
        assert_eq!(inv.var("DNSMASQ_DOMAIN"), Some("lab.test"));

        let inv = invocation(
            &Change::new(Action::Del, rec),
            &Context {
                log_dhcp: true,
                ..ctx()
            },
        );
        assert_eq!(inv.var("DNSMASQ_INTERFACE"), Some("eth1"));
        assert_eq!(inv.var("DNSMASQ_DATA_MISSING"), Some("1"));
        assert_eq!(inv.var("DNSMASQ_LOG_DHCP"), Some("1"));
    }
}
