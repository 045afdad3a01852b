//! The ICMP check before offering a new address (dnsmasq's, minus its flaw:
//! dnsmasq stops all DHCP while it waits). Probes run on their own task; the
//! engine parks the client's DISCOVER and goes on serving others.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long an address gets to answer. Kea's ping check waits 100 ms by
/// default; LAN hosts answer in well under a millisecond, and we wait a
/// little longer for sleepy Wi-Fi clients without stalling anyone.
pub const PING_WAIT: Duration = Duration::from_millis(500);

pub struct ProbeRequest {
    pub token: u64,
    pub addr: Ipv4Addr,
}

pub struct ProbeResult {
    pub token: u64,
    pub answered: bool,
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"twinmasq");
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// (source, id, seq) of an echo reply in a raw-socket datagram (IP header
/// included), or None for anything else.
fn parse_echo_reply(pkt: &[u8]) -> Option<(Ipv4Addr, u16, u16)> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    let src = Ipv4Addr::new(*pkt.get(12)?, *pkt.get(13)?, *pkt.get(14)?, *pkt.get(15)?);
    let icmp = pkt.get(ihl..)?;
    if icmp.len() < 8 || icmp[0] != 0 {
        return None;
    }
    Some((
        src,
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

fn open() -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn open_async() -> std::io::Result<AsyncFd<Socket>> {
    let s = open()?;
    // SAFETY: the Socket owns its descriptor, and the AsyncFd owns the
    // Socket: the descriptor is neither replaced nor closed while registered.
    unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1)
}

/// Runs until `requests` closes. Without a raw socket (no CAP_NET_RAW)
/// every address counts as quiet, with one warning.
pub async fn run(
    mut requests: mpsc::Receiver<ProbeRequest>,
    results: mpsc::Sender<ProbeResult>,
    wait: Duration,
) {
    let sock = match open_async() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "cannot open an ICMP socket ({e}): offering addresses without a ping check"
            );
            None
        }
    };
    let id = (std::process::id() & 0xffff) as u16;
    let mut seq: u16 = 0;
    let mut pending: HashMap<u16, (u64, Ipv4Addr, Instant)> = HashMap::new();
    let mut buf = [0u8; 1500];
    loop {
        let next_deadline = pending.values().map(|p| p.2).min();
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { return };
                let Some(sock) = &sock else {
                    if results.send(ProbeResult { token: req.token, answered: false }).await.is_err() { return; }
                    continue;
                };
                seq = seq.wrapping_add(1);
                let to = SocketAddrV4::new(req.addr, 0);
                if let Err(e) = sock.get_ref().send_to(&echo_request(id, seq), &to.into()) {
                    tracing::debug!("ping {}: {e}", req.addr);
                }
                pending.insert(seq, (req.token, req.addr, Instant::now() + wait));
            }
            ready = async { match &sock { Some(s) => s.readable().await, None => std::future::pending().await } } => {
                let Ok(mut guard) = ready else { continue };
                let Some(s) = &sock else { continue };
                loop {
                    // SAFETY of the cast: recv writes at most buf.len() initialised bytes.
                    let uninit = unsafe { &mut *(&mut buf[..] as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
                    match s.get_ref().recv(uninit) {
                        Ok(n) => {
                            if let Some((src, rid, rseq)) = parse_echo_reply(&buf[..n]) {
                                if rid == id && pending.get(&rseq).is_some_and(|p| p.1 == src) {
                                    if let Some((token, _, _)) = pending.remove(&rseq) {
                                        if results.send(ProbeResult { token, answered: true }).await.is_err() { return; }
                                    }
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => { guard.clear_ready(); break; }
                        Err(_) => break,
                    }
                }
            }
            _ = async { match next_deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                let now = Instant::now();
                let due: Vec<u16> = pending.iter().filter(|(_, p)| p.2 <= now).map(|(k, _)| *k).collect();
                for k in due {
                    if let Some((token, _, _)) = pending.remove(&k) {
                        if results.send(ProbeResult { token, answered: false }).await.is_err() { return; }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0);
    }

    #[test]
    fn parses_only_echo_replies() {
        let mut pkt = vec![
            0x45u8, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 0, 9, 198, 18, 0, 1,
        ];
        pkt.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert_eq!(
            parse_echo_reply(&pkt),
            Some((Ipv4Addr::new(198, 18, 0, 9), 0x1234, 7))
        );
        pkt[20] = 8;
        assert_eq!(parse_echo_reply(&pkt), None);
        assert_eq!(parse_echo_reply(&pkt[..22]), None);
        assert_eq!(parse_echo_reply(&[0x4f]), None);
    }

    #[tokio::test]
    async fn loopback_answers() {
        let (req_tx, req_rx) = mpsc::channel(4);
        let (res_tx, mut res_rx) = mpsc::channel(4);
        tokio::spawn(run(req_rx, res_tx, Duration::from_millis(300)));
        req_tx
            .send(ProbeRequest {
                token: 1,
                addr: Ipv4Addr::LOCALHOST,
            })
            .await
            .unwrap();
        let r = res_rx.recv().await.unwrap();
        assert_eq!(r.token, 1);
        // Without CAP_NET_RAW the prober reports every address quiet; the
        // quiet path against a real namespace is in the integration tests.
        assert_eq!(r.answered, open().is_ok());
    }
}
