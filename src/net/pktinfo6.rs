//! UDP over IPv6 with IPV6_PKTINFO, the counterpart of [`super::pktinfo`]:
//! each datagram says which interface and address it arrived on, and each
//! reply leaves from that address, so a client that asked one of several
//! addresses of a wildcard socket hears back from the one it asked.

use std::io;
use std::mem;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::RawFd;

use super::mmsg::{self, Family};

/// IPv6, for [`mmsg`].
#[derive(Debug, Clone, Copy)]
pub enum V6 {}

/// Where a datagram arrived; `src` carries the scope when link-local.
pub type RecvMeta6 = mmsg::Meta<V6>;
/// Datagrams read by one `recvmmsg`.
pub type RecvBatch6 = mmsg::RecvBatch<V6>;
/// One datagram for [`send_batch`].
pub type Outgoing6<'a> = mmsg::Outgoing<'a, V6>;

/// Sends every datagram from its source address and interface, batched
/// (see [`mmsg::send_batch`]).
pub fn send_batch(fd: RawFd, out: &[Outgoing6<'_>], on_error: impl FnMut(SocketAddrV6, io::Error)) {
    mmsg::send_batch(fd, out.iter().copied(), on_error);
}

/// Turns on IPV6_RECVPKTINFO reporting for a socket.
pub fn enable(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: valid fd, option value is a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVPKTINFO,
            &on as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Family for V6 {
    type Sock = libc::sockaddr_in6;
    type Addr = SocketAddrV6;
    type Ip = Ipv6Addr;

    fn sockaddr(a: SocketAddrV6) -> libc::sockaddr_in6 {
        // SAFETY: all-zero is a valid sockaddr_in6.
        let mut s: libc::sockaddr_in6 = unsafe { mem::zeroed() };
        s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        s.sin6_port = a.port().to_be();
        s.sin6_flowinfo = a.flowinfo().to_be();
        s.sin6_addr.s6_addr = a.ip().octets();
        s.sin6_scope_id = a.scope_id();
        s
    }

    fn addr_of(a: std::net::SocketAddr) -> Option<SocketAddrV6> {
        match a {
            std::net::SocketAddr::V6(a) => Some(a),
            std::net::SocketAddr::V4(_) => None,
        }
    }

    fn ip_of(ip: std::net::IpAddr) -> Option<Ipv6Addr> {
        match ip {
            std::net::IpAddr::V6(ip) => Some(ip),
            std::net::IpAddr::V4(_) => None,
        }
    }

    unsafe fn parse(msg: &libc::msghdr, addr: &libc::sockaddr_in6, len: usize) -> RecvMeta6 {
        let mut meta = RecvMeta6 {
            len,
            src: SocketAddrV6::new(
                Ipv6Addr::from(addr.sin6_addr.s6_addr),
                u16::from_be(addr.sin6_port),
                u32::from_be(addr.sin6_flowinfo),
                addr.sin6_scope_id,
            ),
            ifindex: 0,
            dst: Ipv6Addr::UNSPECIFIED,
        };
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 && (*cmsg).cmsg_type == libc::IPV6_PKTINFO {
                let info =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in6_pktinfo);
                meta.ifindex = info.ipi6_ifindex;
                meta.dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
        meta
    }

    unsafe fn fill_pktinfo(msg: &mut libc::msghdr, ifindex: u32, from: Ipv6Addr) -> bool {
        msg.msg_controllen = libc::CMSG_SPACE(mem::size_of::<libc::in6_pktinfo>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        if cmsg.is_null() {
            return false;
        }
        (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
        (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<libc::in6_pktinfo>() as u32) as _;
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: from.octets(),
            },
            ipi6_ifindex: ifindex,
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::in6_pktinfo, info);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn v6(s: &UdpSocket) -> SocketAddrV6 {
        match s.local_addr().unwrap() {
            SocketAddr::V6(a) => a,
            other => panic!("not IPv6: {other}"),
        }
    }

    #[test]
    fn batches_carry_each_datagram_with_its_addresses() {
        let server = UdpSocket::bind("[::1]:0").unwrap();
        enable(server.as_raw_fd()).unwrap();
        let client = UdpSocket::bind("[::1]:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        for i in 0..3u8 {
            client.send_to(&[i; 5], v6(&server)).unwrap();
        }
        client.send_to(&[9u8; 20], v6(&server)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        server.set_nonblocking(true).unwrap();

        let mut batch = RecvBatch6::new(3, 16);
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 3);
        let mut replies = Vec::new();
        for i in 0..3 {
            let (buf, meta) = batch.get(i).unwrap();
            assert_eq!(buf, &[i as u8; 5]);
            assert_eq!(meta.src.ip(), v6(&client).ip());
            assert_eq!(meta.src.port(), v6(&client).port());
            assert_eq!(meta.dst, Ipv6Addr::LOCALHOST);
            assert_ne!(meta.ifindex, 0);
            replies.push((buf.iter().map(|b| b + 100).collect::<Vec<u8>>(), meta));
        }
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 1);
        assert!(batch.get(0).is_none(), "a truncated datagram is dropped");
        let e = batch.recv(server.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);

        let out: Vec<Outgoing6<'_>> = replies
            .iter()
            .map(|(p, m)| Outgoing6 {
                packet: p,
                to: m.src,
                ifindex: m.ifindex,
                from: m.dst,
            })
            .collect();
        let mut errors = Vec::new();
        send_batch(server.as_raw_fd(), &out, |to, e| errors.push((to, e)));
        assert!(errors.is_empty(), "{errors:?}");
        for i in 0..3u8 {
            let mut buf = [0u8; 64];
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i + 100; 5]);
            assert_eq!(from, server.local_addr().unwrap());
        }
    }
}
