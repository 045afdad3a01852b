//! Encoding a reply and deciding where it goes (RFC 2131 §4.1).
//!
//! dhcproto writes the fixed header; options are appended here because we
//! need control it does not give: message type first, relay information
//! (82) last as RFC 3046 asks, optional options trimmed to fit the client's
//! maximum message size, and padding to the 300-byte BOOTP minimum.

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;

use super::request::Request;

/// Where a reply goes. The shell sends it on the arrival interface, from
/// the network's server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// To a relay agent, port 67.
    Relay(Ipv4Addr),
    /// To a configured client address, port 68.
    Unicast(Ipv4Addr),
    /// To 255.255.255.255, port 68.
    Broadcast,
    /// To `ip` at `chaddr`, a client that has no address yet but can take
    /// unicast: needs an ARP entry (or the shell falls back to broadcast).
    Hardware {
        ip: Ipv4Addr,
        htype: u8,
        chaddr: Vec<u8>,
    },
}

/// Options in send order. Those before `optional_from` are always kept;
/// the rest go, last first, when the message would be too big. `tail` (the
/// relay information echo) always goes last.
#[derive(Debug, Default, Clone)]
pub struct OptionList {
    pub opts: Vec<(u8, Vec<u8>)>,
    pub optional_from: usize,
    pub tail: Option<(u8, Vec<u8>)>,
}

impl OptionList {
    pub fn required(&mut self, code: u8, data: Vec<u8>) {
        debug_assert_eq!(
            self.optional_from,
            self.opts.len(),
            "required options go first"
        );
        self.opts.push((code, data));
        self.optional_from = self.opts.len();
    }

    pub fn optional(&mut self, code: u8, data: Vec<u8>) {
        self.opts.push((code, data));
    }

    pub fn has(&self, code: u8) -> bool {
        self.opts.iter().any(|(c, _)| *c == code)
    }
}

const IP_UDP_HEADERS: usize = 28;
const MIN_MESSAGE: usize = 576;
const BOOTP_MIN_LEN: usize = 300;
/// What we assume the path carries when the client allows more.
const MAX_MESSAGE: usize = 1500;

/// The largest DHCP payload this client accepts: its option 57 (counted with
/// IP and UDP headers, as ISC and dnsmasq read it), never below RFC 2131's
/// 576 nor above an Ethernet MTU.
pub fn size_limit(req: &Request) -> usize {
    let total = req
        .max_size
        .map_or(MIN_MESSAGE, usize::from)
        .clamp(MIN_MESSAGE, MAX_MESSAGE);
    total - IP_UDP_HEADERS
}

/// The most a reply carries besides the options it echoes: header and
/// cookie (240), message type (3), server id (6), lease time, T1 and T2
/// (18), netmask (6), rapid commit (2) and the end mark (1).
const FIXED_REPLY_PART: usize = 240 + 3 + 6 + 18 + 6 + 2 + 1;

/// Do the options a reply must echo verbatim (client id, RFC 6842; relay
/// information, RFC 3046) fit in this client's maximum message size with
/// the other required options? Each can be 255 bytes, so a hostile client
/// can make them not fit; such a request gets no reply rather than one
/// larger than the client said it takes.
pub fn echoes_fit(req: &Request) -> bool {
    let echoed = req.client_id.as_deref().map_or(0, option_len)
        + req.relay_info.as_deref().map_or(0, option_len);
    FIXED_REPLY_PART + echoed <= size_limit(req)
}

fn option_len(data: &[u8]) -> usize {
    // Values over 255 bytes are split into several instances (RFC 3396).
    let chunks = data.len().div_ceil(255).max(1);
    chunks * 2 + data.len()
}

fn push_option(out: &mut Vec<u8>, code: u8, data: &[u8]) {
    if data.is_empty() {
        out.extend_from_slice(&[code, 0]);
        return;
    }
    for chunk in data.chunks(255) {
        out.push(code);
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}

pub struct Header {
    pub kind: MessageType,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub fixed: FixedFields,
}

/// The BOOTP fields an OFFER or ACK may fill (`dhcp-boot`), and the
/// broadcast flag `dhcp-broadcast` forces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedFields {
    pub siaddr: Ipv4Addr,
    /// Written without their terminating zero; cut to fit the field.
    pub sname: Vec<u8>,
    pub file: Vec<u8>,
    pub broadcast: bool,
}

impl Default for FixedFields {
    fn default() -> Self {
        FixedFields {
            siaddr: Ipv4Addr::UNSPECIFIED,
            sname: Vec::new(),
            file: Vec::new(),
            broadcast: false,
        }
    }
}

const SNAME_LEN: usize = 64;
const FILE_LEN: usize = 128;

/// A text field of `len` bytes that keeps its last byte zero, as
/// dnsmasq's strncpy into it does.
fn text_field(out: &mut Vec<u8>, text: &[u8], len: usize) {
    let n = text.len().min(len - 1);
    out.extend_from_slice(&text[..n]);
    out.resize(out.len() + len - n, 0);
}

/// The fixed BOOTP header (RFC 2131 §2, RFC 951) and the magic cookie.
/// Written by hand: it is 240 fixed bytes, and building a dhcproto
/// `Message` for it cost more than the rest of the reply together.
fn header_bytes(out: &mut Vec<u8>, req: &Request, header: &Header) {
    // A NAK through a relay must be broadcast by the relay (RFC 2131 §4.3.2).
    let broadcast = req.broadcast
        || header.fixed.broadcast
        || (header.kind == MessageType::Nak && !req.giaddr.is_unspecified());
    out.extend_from_slice(&[2, req.htype, req.chaddr.len() as u8, 0]);
    out.extend_from_slice(&req.xid.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // secs
    out.extend_from_slice(&(if broadcast { 0x8000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&header.ciaddr.octets());
    out.extend_from_slice(&header.yiaddr.octets());
    out.extend_from_slice(&header.fixed.siaddr.octets());
    out.extend_from_slice(&req.giaddr.octets());
    let mut chaddr = [0u8; 16];
    // decode() guarantees chaddr is at most 16 bytes.
    let n = req.chaddr.len().min(16);
    chaddr[..n].copy_from_slice(&req.chaddr[..n]);
    out.extend_from_slice(&chaddr);
    text_field(out, &header.fixed.sname, SNAME_LEN);
    text_field(out, &header.fixed.file, FILE_LEN);
    out.extend_from_slice(&MAGIC);
}

const MAGIC: [u8; 4] = [99, 130, 83, 99];

pub fn encode(req: &Request, header: Header, mut opts: OptionList) -> Vec<u8> {
    let mut out = Vec::with_capacity(548);
    header_bytes(&mut out, req, &header);

    let limit = size_limit(req);
    let tail_len = opts.tail.as_ref().map_or(0, |(_, d)| option_len(d));
    let mut total =
        240 + 3 + 1 + tail_len + opts.opts.iter().map(|(_, d)| option_len(d)).sum::<usize>();
    while total > limit && opts.opts.len() > opts.optional_from {
        if let Some((_, d)) = opts.opts.pop() {
            total -= option_len(&d);
        }
    }
    push_option(&mut out, 53, &[u8::from(header.kind)]);
    for (code, data) in &opts.opts {
        push_option(&mut out, *code, data);
    }
    if let Some((code, data)) = &opts.tail {
        push_option(&mut out, *code, data);
    }
    out.push(255);
    if out.len() < BOOTP_MIN_LEN {
        out.resize(BOOTP_MIN_LEN, 0);
    }
    out
}

/// Lease time, renewal (T1) and rebinding (T2) options.
const OPT_LEASE_TIME: u8 = 51;
const OPT_T1: u8 = 58;
const OPT_T2: u8 = 59;

/// Takes `secs` off the lease time, T1 and T2 of an encoded reply, for a
/// reply that waited that long after its lease was recorded (for the
/// disk, or for the failover partner's ack): a client counts its lease
/// from when the reply reaches it, so the lease it is told must end when
/// the record does. False if the lease would be over by then: such a
/// reply promises nothing and must not leave. An infinite lease, or a
/// reply without a lease time, is left as it is.
pub fn age_lease(packet: &mut [u8], secs: u32) -> bool {
    if secs == 0 {
        return true;
    }
    let mut at = 240;
    let mut spans = Vec::with_capacity(3);
    while let Some(&code) = packet.get(at) {
        match code {
            0 => at += 1,
            255 => break,
            _ => {
                let Some(&len) = packet.get(at + 1) else {
                    break;
                };
                let data = at + 2;
                if matches!(code, OPT_LEASE_TIME | OPT_T1 | OPT_T2)
                    && len == 4
                    && data + 4 <= packet.len()
                {
                    spans.push((code, data));
                }
                at = data + usize::from(len);
            }
        }
    }
    let read = |p: &[u8], i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let Some(&(_, lease_at)) = spans.iter().find(|(c, _)| *c == OPT_LEASE_TIME) else {
        return true;
    };
    let lease = read(packet, lease_at);
    if lease == u32::MAX {
        return true;
    }
    if lease <= secs {
        return false;
    }
    for (_, i) in spans {
        let v = read(packet, i).saturating_sub(secs).max(1);
        packet[i..i + 4].copy_from_slice(&v.to_be_bytes());
    }
    true
}

/// RFC 2131 §4.1, in its order: relay first, then NAKs broadcast, then a
/// client that has an address, then the broadcast bit, then unicast to the
/// new address.
pub fn destination(
    req: &Request,
    kind: MessageType,
    yiaddr: Ipv4Addr,
    force_broadcast: bool,
) -> Destination {
    if !req.giaddr.is_unspecified() {
        return Destination::Relay(req.giaddr);
    }
    if kind == MessageType::Nak {
        return Destination::Broadcast;
    }
    if !req.ciaddr.is_unspecified() {
        return Destination::Unicast(req.ciaddr);
    }
    if req.broadcast || force_broadcast || yiaddr.is_unspecified() {
        return Destination::Broadcast;
    }
    Destination::Hardware {
        ip: yiaddr,
        htype: req.htype,
        chaddr: req.chaddr.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::request::{build::RawRequest, decode};

    /// A reply with lease time 3600, T1 1800 and T2 3150 after the header.
    fn with_lease_times() -> Vec<u8> {
        let mut p = vec![0u8; 240];
        p.extend_from_slice(&[53, 1, 5]);
        for (code, v) in [(51u8, 3600u32), (58, 1800), (59, 3150)] {
            p.push(code);
            p.push(4);
            p.extend_from_slice(&v.to_be_bytes());
        }
        p.push(255);
        p
    }

    fn times(p: &[u8]) -> [u32; 3] {
        let at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        [at(245), at(251), at(257)]
    }

    #[test]
    fn a_reply_that_waited_tells_that_much_less() {
        let mut p = with_lease_times();
        assert!(age_lease(&mut p, 0));
        assert_eq!(times(&p), [3600, 1800, 3150]);
        assert!(age_lease(&mut p, 8));
        assert_eq!(times(&p), [3592, 1792, 3142]);
        // A lease over by the time it would arrive: the reply stays.
        assert!(!age_lease(&mut with_lease_times(), 3600));
        // Infinite: as it is.
        let mut inf = with_lease_times();
        inf[245..249].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(age_lease(&mut inf, 8));
        assert_eq!(times(&inf)[0], u32::MAX);
        // Truncated options do not panic.
        let mut cut = with_lease_times();
        cut.truncate(247);
        assert!(age_lease(&mut cut, 8));
    }

    fn req(extra: impl FnOnce(&mut RawRequest)) -> Request {
        let mut r = RawRequest::new(1, [2, 0, 0, 0, 0, 9], 0xabcd);
        extra(&mut r);
        decode(&r.finish()).unwrap()
    }

    fn options_of(packet: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 240;
        while i < packet.len() && packet[i] != 255 {
            let (c, l) = (packet[i], packet[i + 1] as usize);
            out.push((c, packet[i + 2..i + 2 + l].to_vec()));
            i += 2 + l;
        }
        out
    }

    #[test]
    fn header_fields_order_and_padding() {
        let r = req(|r| {
            r.broadcast();
        });
        let mut o = OptionList::default();
        o.required(54, vec![198, 18, 0, 1]);
        o.optional(3, vec![198, 18, 0, 1]);
        o.tail = Some((82, vec![1, 2, 0, 7]));
        let header = Header {
            kind: MessageType::Offer,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(198, 18, 0, 50),
            fixed: FixedFields::default(),
        };
        let p = encode(&r, header, o);
        assert_eq!(p.len(), 300);
        assert_eq!(p[0], 2);
        assert_eq!(&p[4..8], &0xabcdu32.to_be_bytes());
        assert_eq!(&p[16..20], &[198, 18, 0, 50]);
        assert_eq!(p[10] & 0x80, 0x80);
        assert_eq!(&p[28..34], &[2, 0, 0, 0, 0, 9]);
        let codes: Vec<u8> = options_of(&p).iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, vec![53, 54, 3, 82]);
    }

    #[test]
    fn trims_optional_options_to_the_client_limit() {
        let r = req(|_| {});
        let mut o = OptionList::default();
        o.required(54, vec![1, 2, 3, 4]);
        for code in 200..210u8 {
            o.optional(code, vec![0; 100]);
        }
        o.tail = Some((82, vec![1, 1, 1]));
        let header = Header {
            kind: MessageType::Ack,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(198, 18, 0, 5),
            fixed: FixedFields::default(),
        };
        let p = encode(&r, header, o);
        assert!(p.len() <= 548, "{} bytes", p.len());
        let codes: Vec<u8> = options_of(&p).iter().map(|(c, _)| *c).collect();
        assert_eq!(codes.first(), Some(&53));
        assert_eq!(codes.last(), Some(&82));
        assert!(codes.contains(&54));
        assert!(codes.contains(&200) && !codes.contains(&209));
    }

    #[test]
    fn echoes_that_cannot_fit_are_refused_before_any_reply() {
        let long_id = [1u8; 255];
        let long_relay = [1u8; 255];
        let one = req(|r| {
            r.opt(61, &long_id);
        });
        assert!(echoes_fit(&one), "one long echo fits in 548 bytes");
        let both = req(|r| {
            r.opt(61, &long_id).opt(82, &long_relay);
        });
        assert!(!echoes_fit(&both));
        let both_big_client = req(|r| {
            r.opt(61, &long_id)
                .opt(82, &long_relay)
                .opt(57, &1500u16.to_be_bytes());
        });
        assert!(
            echoes_fit(&both_big_client),
            "a client taking 1500 bytes fits both"
        );
        // Whatever fits the check, the encoded reply fits the client's limit.
        let mut o = OptionList::default();
        o.required(54, vec![1, 2, 3, 4]);
        o.required(51, vec![0; 4]);
        o.required(58, vec![0; 4]);
        o.required(59, vec![0; 4]);
        o.required(61, long_id.to_vec());
        o.required(1, vec![255, 255, 255, 0]);
        o.optional(81, vec![0; 200]);
        o.tail = None;
        let header = Header {
            kind: MessageType::Ack,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(198, 18, 0, 5),
            fixed: FixedFields::default(),
        };
        let p = encode(&one, header, o);
        assert!(p.len() <= size_limit(&one), "{} bytes", p.len());
    }

    #[test]
    fn destinations_follow_rfc2131() {
        let yi = Ipv4Addr::new(198, 18, 0, 5);
        let relayed = req(|r| {
            r.giaddr([198, 18, 9, 1].into());
        });
        assert_eq!(
            destination(&relayed, MessageType::Nak, yi, false),
            Destination::Relay([198, 18, 9, 1].into())
        );
        let renewing = req(|r| {
            r.ciaddr(yi);
        });
        assert_eq!(
            destination(&renewing, MessageType::Ack, yi, false),
            Destination::Unicast(yi)
        );
        assert_eq!(
            destination(&renewing, MessageType::Nak, yi, false),
            Destination::Broadcast
        );
        let bcast = req(|r| {
            r.broadcast();
        });
        assert_eq!(
            destination(&bcast, MessageType::Offer, yi, false),
            Destination::Broadcast
        );
        let plain = req(|_| {});
        assert!(matches!(
            destination(&plain, MessageType::Offer, yi, false),
            Destination::Hardware { .. }
        ));
        // dhcp-broadcast: as if the client had set the flag.
        assert_eq!(
            destination(&plain, MessageType::Offer, yi, true),
            Destination::Broadcast
        );
        assert_eq!(
            destination(&renewing, MessageType::Ack, yi, true),
            Destination::Unicast(yi)
        );
    }

    #[test]
    fn boot_fields_and_forced_broadcast_flag() {
        let plain = req(|_| {});
        let long = vec![b'f'; 200];
        let header = Header {
            kind: MessageType::Ack,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(198, 18, 0, 5),
            fixed: FixedFields {
                siaddr: Ipv4Addr::new(198, 18, 0, 9),
                sname: b"boothost".to_vec(),
                file: long,
                broadcast: true,
            },
        };
        let p = encode(&plain, header, OptionList::default());
        assert_eq!(p[10] & 0x80, 0x80);
        assert_eq!(&p[20..24], &[198, 18, 0, 9]);
        assert_eq!(&p[44..52], b"boothost");
        assert!(p[52..108].iter().all(|b| *b == 0));
        // 127 bytes of name and the field's closing zero.
        assert!(p[108..235].iter().all(|b| *b == b'f'));
        assert_eq!(p[235], 0);
        assert_eq!(&p[236..240], &MAGIC);
    }

    #[test]
    fn relayed_nak_sets_broadcast_bit() {
        let relayed = req(|r| {
            r.giaddr([198, 18, 9, 1].into());
        });
        let header = Header {
            kind: MessageType::Nak,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            fixed: FixedFields::default(),
        };
        let p = encode(&relayed, header, OptionList::default());
        assert_eq!(p[10] & 0x80, 0x80);
        assert_eq!(&p[24..28], &[198, 18, 9, 1]);
    }
}
