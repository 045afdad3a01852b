//! UDP with IP_PKTINFO: each datagram says which interface and address it
//! arrived on, and each reply leaves from a chosen address on a chosen
//! interface, as multi-homed routers need. Shared by the DHCP and DNS shells;
//! the batched calls are [`super::mmsg`]'s, for this family.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

use super::mmsg::{self, msghdr, Family, CMSG_SPACE};

/// IPv4, for [`mmsg`].
#[derive(Debug, Clone, Copy)]
pub enum V4 {}

/// Where a datagram arrived.
pub type RecvMeta = mmsg::Meta<V4>;
/// Datagrams read by one `recvmmsg`.
pub type RecvBatch = mmsg::RecvBatch<V4>;
/// One datagram for [`send_batch`]: as the arguments of [`send`].
pub type Outgoing<'a> = mmsg::Outgoing<'a, V4>;

/// Sends every datagram as [`send`] would, batched (see [`mmsg::send_batch`]).
pub fn send_batch(fd: RawFd, out: &[Outgoing<'_>], on_error: impl FnMut(SocketAddrV4, io::Error)) {
    mmsg::send_batch(fd, out.iter().copied(), on_error);
}

impl Family for V4 {
    type Sock = libc::sockaddr_in;
    type Addr = SocketAddrV4;
    type Ip = Ipv4Addr;

    fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut s: libc::sockaddr_in = unsafe { mem::zeroed() };
        s.sin_family = libc::AF_INET as libc::sa_family_t;
        s.sin_port = a.port().to_be();
        s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
        s
    }

    fn addr_of(a: std::net::SocketAddr) -> Option<SocketAddrV4> {
        match a {
            std::net::SocketAddr::V4(a) => Some(a),
            std::net::SocketAddr::V6(_) => None,
        }
    }

    fn ip_of(ip: std::net::IpAddr) -> Option<Ipv4Addr> {
        match ip {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        }
    }

    unsafe fn parse(msg: &libc::msghdr, addr: &libc::sockaddr_in, len: usize) -> RecvMeta {
        let mut meta = RecvMeta {
            len,
            src: SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                u16::from_be(addr.sin_port),
            ),
            ifindex: 0,
            dst: Ipv4Addr::UNSPECIFIED,
        };
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                let info =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in_pktinfo);
                meta.ifindex = info.ipi_ifindex as u32;
                meta.dst = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
        meta
    }

    unsafe fn fill_pktinfo(msg: &mut libc::msghdr, ifindex: u32, from: Ipv4Addr) -> bool {
        msg.msg_controllen = libc::CMSG_SPACE(mem::size_of::<libc::in_pktinfo>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        if cmsg.is_null() {
            return false;
        }
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = libc::IP_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as u32) as _;
        let info = libc::in_pktinfo {
            ipi_ifindex: ifindex as libc::c_int,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(from).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::in_pktinfo, info);
        true
    }
}

/// Turns on IP_PKTINFO reporting for a socket.
pub fn enable(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: valid fd, option value is a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            &on as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One `recvmsg` on a non-blocking socket; `WouldBlock` when empty.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<RecvMeta> {
    // SAFETY: all-zero is a valid sockaddr_in; pointers set below reference
    // locals that outlive the call; the kernel writes at most the lengths we
    // pass.
    unsafe {
        let mut addr: libc::sockaddr_in = mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u8; CMSG_SPACE];
        let mut msg = msghdr(&mut addr, &mut iov, &mut control);
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let meta = V4::parse(&msg, &addr, n as usize);
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "datagram larger than the receive buffer",
            ));
        }
        Ok(meta)
    }
}

/// Sends `packet` to `to` out of interface `ifindex` with source address
/// `from` (IP_PKTINFO), so broadcasts leave on the right link.
pub fn send(
    fd: RawFd,
    packet: &[u8],
    to: SocketAddrV4,
    ifindex: u32,
    from: Ipv4Addr,
) -> io::Result<()> {
    // SAFETY: as in `recv`; the control buffer is large enough for one
    // in_pktinfo header, which CMSG_FIRSTHDR checks against msg_controllen.
    unsafe {
        let mut addr = V4::sockaddr(to);
        let mut iov = libc::iovec {
            iov_base: packet.as_ptr() as *mut libc::c_void,
            iov_len: packet.len(),
        };
        let mut control = [0u8; CMSG_SPACE];
        let mut msg = msghdr(&mut addr, &mut iov, &mut control);
        if !V4::fill_pktinfo(&mut msg, ifindex, from) {
            return Err(io::Error::other("no room for IP_PKTINFO"));
        }
        if libc::sendmsg(fd, &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn v4(s: &UdpSocket) -> SocketAddrV4 {
        match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("not IPv4: {other}"),
        }
    }

    /// A loopback server socket with packet info on, and a client with a
    /// read timeout.
    fn server_and_client() -> (UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(server.as_raw_fd()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        (server, client)
    }

    #[test]
    fn batches_carry_each_datagram_with_its_addresses() {
        let (server, client) = server_and_client();
        for i in 0..3u8 {
            client.send_to(&[i; 5], v4(&server)).unwrap();
        }
        // One longer than a slot: dropped, the others still served.
        client.send_to(&[9u8; 20], v4(&server)).unwrap();
        // Loopback delivers within the send; the pause only guards a slow box.
        std::thread::sleep(Duration::from_millis(50));
        server.set_nonblocking(true).unwrap();

        let mut batch = RecvBatch::new(3, 16);
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 3);
        let mut replies = Vec::new();
        for i in 0..3 {
            let (buf, meta) = batch.get(i).unwrap();
            assert_eq!(buf, &[i as u8; 5]);
            assert_eq!(meta.src, v4(&client));
            assert_eq!(meta.dst, Ipv4Addr::LOCALHOST);
            assert_ne!(meta.ifindex, 0);
            replies.push((buf.iter().map(|b| b + 100).collect::<Vec<u8>>(), meta));
        }
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 1);
        assert!(
            batch.get(0).is_none(),
            "a truncated datagram must not be served"
        );
        let e = batch.recv(server.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);

        let out: Vec<Outgoing<'_>> = replies
            .iter()
            .map(|(p, m)| Outgoing {
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

    #[test]
    fn a_refused_datagram_is_reported_and_the_rest_still_leave() {
        let (server, client) = server_and_client();
        let big = vec![1u8; 70_000]; // over the UDP maximum: EMSGSIZE
        let out = [
            Outgoing {
                packet: &big,
                to: v4(&client),
                ifindex: 0,
                from: Ipv4Addr::LOCALHOST,
            },
            Outgoing {
                packet: b"ok",
                to: v4(&client),
                ifindex: 0,
                from: Ipv4Addr::LOCALHOST,
            },
        ];
        let mut errors = Vec::new();
        send_batch(server.as_raw_fd(), &out, |to, e| errors.push((to, e)));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, v4(&client));
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ok");
    }

    #[test]
    fn more_than_one_sendmmsg_worth_all_leave_in_order() {
        let (server, client) = server_and_client();
        let big = vec![1u8; 70_000];
        // 64 + 64 + 2: exactly a full second batch, then a short third;
        // datagram 100 is refused.
        let packets: Vec<Vec<u8>> = (0..130u32)
            .map(|i| {
                if i == 100 {
                    big.clone()
                } else {
                    i.to_be_bytes().to_vec()
                }
            })
            .collect();
        let out: Vec<Outgoing<'_>> = packets
            .iter()
            .map(|p| Outgoing {
                packet: p,
                to: v4(&client),
                ifindex: 0,
                from: Ipv4Addr::LOCALHOST,
            })
            .collect();
        let mut errors = Vec::new();
        send_batch(server.as_raw_fd(), &out, |to, e| errors.push((to, e)));
        assert_eq!(errors.len(), 1, "{errors:?}");
        for i in (0..130u32).filter(|&i| i != 100) {
            let mut buf = [0u8; 64];
            let (n, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &i.to_be_bytes());
        }
    }
}
