//! What twinmasq answers itself: lease names (forward and reverse, with
//! `domain`), hosts files, `address=`, `local=`, and dnsmasq's record
//! options. Everything else is for the forwarder.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Record;

/// Where a query that is not answered locally goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The normal upstream servers (`server=ip`, resolv-file).
    Default,
    /// Servers for this domain (`server=/dom/ip`, `rev-server=`).
    Servers(Vec<SocketAddr>),
}

/// The authority's verdict on one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Answered from local data: the rcode, the answer and authority
    /// sections, and whether the AA flag is set (as dnsmasq sets it).
    Local {
        rcode: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
        authoritative: bool,
    },
    /// Not ours: forward it.
    Forward(Route),
}

/// What the DNS engine asks of local data. `Authority` implements it; the
/// engine's tests use small fakes.
pub trait LocalData {
    /// The verdict for one question. `name` is as asked (any case);
    /// `now_secs` is unix time, for lease expiry.
    fn lookup(
        &self,
        name: &hickory_proto::rr::Name,
        qtype: hickory_proto::rr::RecordType,
        now_secs: u64,
    ) -> Lookup;
}
