//! Whose name a lease publishes: names from `dhcp-host` lines are the
//! configured hosts' alone, and `dhcp-name-match`/`dhcp-ignore-names`
//! refuse names such as `wpad`. Real wire bytes, a real sled database.

use std::net::Ipv4Addr;

use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState};

use super::{range, raw_opt, Rig, MAC_A, MAC_B, SERVER};
use crate::config::Config;
use crate::dhcp::engine::Decision;
use crate::dhcp::request::build::RawRequest;
use crate::dhcp::stats::Ignored;

const NAS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 15);
const MAC_C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];

/// The whole config from a conf text, on the rig's range and without ping.
fn whole(text: &'static str) -> impl FnOnce(&mut Config) {
    move |c| {
        let parsed = crate::config::parse_conf_text(text, "test").unwrap();
        *c = Config {
            no_ping: true,
            dhcp_ranges: if parsed.dhcp_ranges.is_empty() {
                vec![range(10, 20)]
            } else {
                parsed.dhcp_ranges.clone()
            },
            ..parsed
        };
    }
}

/// Option 81 with the name in ASCII and the S flag (the client asks the
/// server to publish it).
fn fqdn(name: &str) -> Vec<u8> {
    [&[0x01u8, 0, 0][..], name.as_bytes()].concat()
}

impl Rig {
    /// DISCOVER + REQUEST for `mac`, sending `name` in option `code`
    /// (12 or 81) both times; returns the address and the ACK's bytes.
    fn dora_named(&mut self, mac: [u8; 6], code: u8, name: &[u8]) -> (Ipv4Addr, Vec<u8>) {
        let (_, offer) = self.reply(&RawRequest::new(1, mac, 1).opt(code, name).finish());
        let ip = offer.yiaddr();
        let (r, _) = self.reply(
            &RawRequest::new(3, mac, 2)
                .opt(54, &SERVER.octets())
                .opt(50, &ip.octets())
                .opt(code, name)
                .finish(),
        );
        (ip, r.packet)
    }

    /// A RENEWING request from `mac` on `ip`, naming itself `name`.
    fn renew_named(&mut self, mac: [u8; 6], ip: Ipv4Addr, name: &[u8]) {
        let mut req = RawRequest::new(3, mac, 9);
        req.opt(12, name);
        let mut bytes = req.finish();
        bytes[12..16].copy_from_slice(&ip.octets());
        self.reply(&bytes);
    }

    fn name_of(&self, ip: Ipv4Addr) -> Option<String> {
        self.db.get(ip).and_then(|r| r.hostname)
    }

    fn ip_named(&self, name: &str) -> Option<Ipv4Addr> {
        self.db.by_hostname(name).map(|r| r.ip)
    }
}

const NAS_HOST: &str = "dhcp-host=02:00:00:00:00:0a,198.18.0.15,nas\n";

/// The review's reproduction: the static host holds `nas`, then an unknown
/// client asks for the same name. dnsmasq keeps the configured name
/// (lease.c: "Don't allow a name from the client to override a name from
/// dnsmasq config").
#[test]
fn a_client_cannot_take_a_configured_name_from_its_host() {
    let mut rig = Rig::new(whole(NAS_HOST));
    assert_eq!(rig.dora(MAC_A), NAS);
    assert_eq!(rig.name_of(NAS).as_deref(), Some("nas"));

    let (b, ack) = rig.dora_named(MAC_B, 12, b"nas");
    assert_ne!(b, NAS);
    assert_eq!(rig.ip_named("nas"), Some(NAS), "the DNS name moved");
    assert_eq!(rig.name_of(NAS).as_deref(), Some("nas"));
    assert_eq!(rig.name_of(b), None, "the client got the configured name");
    assert_eq!(raw_opt(&ack, 81), None);
    assert!(rig.db.get(b).is_some_and(|r| r.state == LeaseState::Bound));

    // Other spellings of the same name, and option 81, fare no better.
    let (c, ack) = rig.dora_named(MAC_C, 81, &fqdn("NAS.home.lan"));
    assert_eq!(rig.ip_named("nas"), Some(NAS));
    assert_eq!(rig.name_of(c), None);
    assert_eq!(raw_opt(&ack, 81), None, "option 81 promised the name");
    rig.renew_named(MAC_B, b, b"Nas");
    assert_eq!(rig.ip_named("nas"), Some(NAS));
    assert_eq!(rig.name_of(b), None);

    // A name nobody configured still works for the same client.
    rig.renew_named(MAC_B, b, b"laptop");
    assert_eq!(rig.ip_named("laptop"), Some(b));
    assert_eq!(rig.ip_named("nas"), Some(NAS));
}

/// The other order: the client asks for the name before the configured
/// host has a lease. It does not get it then either, and the host gets its
/// name when it comes.
#[test]
fn a_configured_name_is_refused_before_its_host_arrives() {
    let mut rig = Rig::new(whole(NAS_HOST));
    let (b, _) = rig.dora_named(MAC_B, 12, b"nas");
    assert_eq!(rig.name_of(b), None, "the client got the configured name");
    assert_eq!(rig.ip_named("nas"), None);

    assert_eq!(rig.dora(MAC_A), NAS);
    assert_eq!(rig.ip_named("nas"), Some(NAS));
    rig.renew_named(MAC_B, b, b"nas");
    assert_eq!(rig.ip_named("nas"), Some(NAS));
    assert_eq!(rig.name_of(b), None);
}

/// A lease that already carries a configured name for the wrong client (an
/// older version granted it, or a partner did): the configured host takes
/// the name back when it binds, and the other lease loses it.
#[test]
fn a_configured_host_takes_its_name_back_from_an_older_lease() {
    let mut rig = Rig::new(whole(NAS_HOST));
    let squatter = Ipv4Addr::new(198, 18, 0, 12);
    let rec = LeaseRecord {
        ip: squatter,
        state: LeaseState::Bound,
        client: ClientKey::from_hwaddr(1, &MAC_B),
        htype: 1,
        hwaddr: MAC_B.to_vec(),
        client_id: None,
        hostname: Some("nas".into()),
        expires: Expiry::At(rig.now_secs() + 3600),
        stamp: Default::default(),
    };
    rig.db.commit(rec, rig.now).unwrap();
    rig.engine.note_change(squatter, &rig.db);
    assert_eq!(rig.ip_named("nas"), Some(squatter));

    assert_eq!(rig.dora(MAC_A), NAS);
    assert_eq!(rig.ip_named("nas"), Some(NAS));
    assert_eq!(rig.name_of(squatter), None);
}

/// Names from dhcp-hostsfile and /etc/ethers lines are configured names
/// as much as dhcp-host lines, and a name-only line is not "another
/// client": it gives its name to whoever asks for it.
#[test]
fn names_from_host_files_and_name_only_lines() {
    use crate::config::dhcp_files::DhcpFiles;
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "02:00:00:00:00:0a,198.18.0.15,nas\n").unwrap();
    let text = format!("dhcp-hostsfile={}\n", hosts.display());
    let base = crate::config::parse_conf_text(&text, "test").unwrap();
    let mut rig = Rig::new(|c| {
        c.dhcp_hosts = DhcpFiles::read(&base).merged_into(&base).dhcp_hosts;
    });
    let (b, _) = rig.dora_named(MAC_B, 12, b"nas");
    assert_eq!(
        rig.name_of(b),
        None,
        "a hostsfile name went to another client"
    );

    let mut rig = Rig::new(whole("dhcp-host=printer,198.18.0.16\n"));
    let (b, _) = rig.dora_named(MAC_B, 12, b"printer");
    assert_eq!(b, Ipv4Addr::new(198, 18, 0, 16));
    assert_eq!(rig.ip_named("printer"), Some(b));
}

/// What OpenWrt and Pi-hole write: the names `localhost` and `wpad` get
/// the tag, and names with the tag are not used (the client still gets
/// its lease). Other names are untouched.
const OPENWRT: &str = "dhcp-name-match=set:dhcp_bogus_hostname,localhost\n\
                       dhcp-name-match=set:dhcp_bogus_hostname,wpad\n\
                       dhcp-ignore-names=tag:dhcp_bogus_hostname\n";

#[test]
fn dhcp_name_match_and_ignore_names_refuse_wpad_and_localhost() {
    let mut rig = Rig::new(whole(OPENWRT));
    let (a, ack) = rig.dora_named(MAC_A, 12, b"wpad");
    assert!(rig.db.get(a).is_some_and(|r| r.state == LeaseState::Bound));
    assert_eq!(rig.name_of(a), None);
    assert_eq!(rig.ip_named("wpad"), None);
    assert_eq!(raw_opt(&ack, 12), None);
    let (b, _) = rig.dora_named(MAC_B, 81, &fqdn("LocalHost.lan"));
    assert_eq!(rig.name_of(b), None);
    // No wildcard: only the whole name matches.
    let (c, _) = rig.dora_named(MAC_C, 12, b"wpad2");
    assert_eq!(rig.ip_named("wpad2"), Some(c));
    rig.renew_named(MAC_A, a, b"laptop");
    assert_eq!(rig.ip_named("laptop"), Some(a));
}

#[test]
fn dhcp_name_match_wildcard_and_tag_use() {
    // A trailing `*` matches a prefix; the tag also works for other lines.
    let mut rig = Rig::new(whole(
        "dhcp-name-match=set:bogus,WPAD*\n\
         dhcp-name-match=set:evil,evil\n\
         dhcp-ignore-names=tag:bogus\n\
         dhcp-ignore=tag:evil\n",
    ));
    let (a, _) = rig.dora_named(MAC_A, 12, b"wpad-proxy");
    assert_eq!(rig.name_of(a), None);
    let (b, _) = rig.dora_named(MAC_B, 12, b"wpa");
    assert_eq!(rig.ip_named("wpa"), Some(b));
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_C, 1).opt(12, b"EVIL").finish()),
        Decision::Ignored(Ignored::TagIgnored)
    );
}

#[test]
fn dhcp_ignore_names_without_tags_and_with_range_tags() {
    // Bare: no client name is used; configured names still are.
    let mut rig = Rig::new(whole(format!("{NAS_HOST}dhcp-ignore-names\n").leak()));
    let (b, _) = rig.dora_named(MAC_B, 12, b"laptop");
    assert_eq!(rig.name_of(b), None);
    let (a, _) = rig.dora_named(MAC_A, 12, b"laptop");
    assert_eq!(a, NAS);
    assert_eq!(rig.name_of(a).as_deref(), Some("nas"));

    // All tags of the line must match; the range's tag counts.
    let mut rig = Rig::new(whole(
        "dhcp-range=set:guest,198.18.0.10,198.18.0.20\n\
         dhcp-ignore-names=tag:guest,tag:!known\n\
         dhcp-host=02:00:00:00:00:0b,set:trusted\n",
    ));
    let (a, _) = rig.dora_named(MAC_A, 12, b"guestpc");
    assert_eq!(rig.name_of(a), None);
    let (b, _) = rig.dora_named(MAC_B, 12, b"mine");
    assert_eq!(rig.ip_named("mine"), Some(b));
}
