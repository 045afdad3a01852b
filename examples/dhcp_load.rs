//! A DHCP load generator that records every ACK it receives.
//!
//! It acts as a relay agent (giaddr = the address it binds, port 67), so it
//! needs no raw sockets and no broadcast: each simulated client does
//! DISCOVER → OFFER → REQUEST → ACK through it. Each ACK is appended to
//! `--acks` as `<mac> <ip>` the moment it arrives, so a crash test can check
//! every acknowledged lease against the server's database afterwards.
//!
//! ```text
//! dhcp_load --server 198.18.0.1 --bind 198.18.0.2 --clients 2000 --acks acks.txt
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

struct Args {
    server: Ipv4Addr,
    bind: Ipv4Addr,
    clients: u32,
    window: usize,
    acks: Option<String>,
    seed: u64,
    max_secs: u64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        server: Ipv4Addr::LOCALHOST,
        bind: Ipv4Addr::LOCALHOST,
        clients: 1000,
        window: 64,
        acks: None,
        seed: 1,
        max_secs: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => a.server = val()?.parse()?,
            "--bind" => a.bind = val()?.parse()?,
            "--clients" => a.clients = val()?.parse()?,
            "--window" => a.window = val()?.parse()?,
            "--acks" => a.acks = Some(val()?),
            "--seed" => a.seed = val()?.parse()?,
            "--max-secs" => a.max_secs = val()?.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Discovering,
    Requesting { ip: Ipv4Addr, server_id: Ipv4Addr },
}

struct Txn {
    mac: [u8; 6],
    phase: Phase,
    sent_at: Instant,
    tries: u8,
}

fn mac_for(seed: u64, n: u32) -> [u8; 6] {
    // Locally administered unicast MACs, spread by a mixing function so the
    // server sees unrelated addresses, as from real devices.
    let mut x = seed ^ (u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    let b = x.to_be_bytes();
    [0x02, b[1], b[2], b[3], (n >> 8) as u8, n as u8]
}

fn encode(xid: u32, t: &Txn, giaddr: Ipv4Addr) -> Result<Vec<u8>> {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        giaddr,
        &t.mac,
    );
    m.set_opcode(Opcode::BootRequest);
    m.set_hops(1);
    let o = m.opts_mut();
    match t.phase {
        Phase::Discovering => {
            o.insert(DhcpOption::MessageType(MessageType::Discover));
        }
        Phase::Requesting { ip, server_id } => {
            o.insert(DhcpOption::MessageType(MessageType::Request));
            o.insert(DhcpOption::RequestedIpAddress(ip));
            o.insert(DhcpOption::ServerIdentifier(server_id));
        }
    }
    o.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
    ]));
    let mut buf = Vec::with_capacity(300);
    m.encode(&mut Encoder::new(&mut buf))?;
    Ok(buf)
}

fn mac_text(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let sock =
        UdpSocket::bind(SocketAddrV4::new(a.bind, 67)).context("bind port 67 (run as root)")?;
    sock.set_read_timeout(Some(Duration::from_millis(5)))?;
    let server = SocketAddrV4::new(a.server, 67);
    let mut acks = match &a.acks {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("create {p}"))?),
        None => None,
    };

    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.max_secs);
    let mut next: u32 = 0;
    let mut live: HashMap<u32, Txn> = HashMap::new();
    let (mut acked, mut naks, mut gave_up, mut sent) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = [0u8; 1500];

    while (next < a.clients || !live.is_empty()) && Instant::now() < deadline {
        while live.len() < a.window && next < a.clients {
            let t = Txn {
                mac: mac_for(a.seed, next),
                phase: Phase::Discovering,
                sent_at: Instant::now(),
                tries: 1,
            };
            sock.send_to(&encode(next, &t, a.bind)?, server)?;
            sent += 1;
            live.insert(next, t);
            next += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                    continue;
                };
                let Some(t) = live.get_mut(&m.xid()) else {
                    continue;
                };
                match (m.opts().msg_type(), t.phase) {
                    (Some(MessageType::Offer), Phase::Discovering) => {
                        let server_id = match m.opts().get(OptionCode::ServerIdentifier) {
                            Some(DhcpOption::ServerIdentifier(s)) => *s,
                            _ => a.server,
                        };
                        t.phase = Phase::Requesting {
                            ip: m.yiaddr(),
                            server_id,
                        };
                        t.sent_at = Instant::now();
                        t.tries = 1;
                        sock.send_to(&encode(m.xid(), t, a.bind)?, server)?;
                        sent += 1;
                    }
                    (Some(MessageType::Ack), Phase::Requesting { ip, .. }) if m.yiaddr() == ip => {
                        if let Some(f) = &mut acks {
                            writeln!(f, "{} {}", mac_text(&t.mac), ip)?;
                        }
                        acked += 1;
                        live.remove(&m.xid());
                    }
                    (Some(MessageType::Nak), _) => {
                        naks += 1;
                        live.remove(&m.xid());
                    }
                    _ => {}
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        // Retransmit after a second, three tries in all, as real clients do.
        let now = Instant::now();
        let mut dead = Vec::new();
        for (xid, t) in live.iter_mut() {
            if now.duration_since(t.sent_at) >= Duration::from_secs(1) {
                if t.tries >= 3 {
                    dead.push(*xid);
                } else {
                    t.tries += 1;
                    t.sent_at = now;
                    sock.send_to(&encode(*xid, t, a.bind)?, server)?;
                    sent += 1;
                }
            }
        }
        gave_up += dead.len() as u64;
        for xid in dead {
            live.remove(&xid);
        }
    }
    if let Some(f) = &mut acks {
        f.sync_all()?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "clients {} acked {acked} naks {naks} gave_up {gave_up} unfinished {} sent {sent} secs {secs:.2} rate {:.0}/s",
        next,
        live.len(),
        acked as f64 / secs
    );
    Ok(())
}
