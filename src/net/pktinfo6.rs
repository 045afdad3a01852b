//! UDP over IPv6 with IPV6_PKTINFO, the counterpart of [`super::pktinfo`]:
//! each datagram says which interface and address it arrived on, and each
//! reply leaves from that address, so a client that asked one of several
//! addresses of a wildcard socket hears back from the one it asked.
//!
//! Kept apart from the IPv4 module so that the IPv4 path keeps its own
//! fixed-size headers and no per-datagram family test.

use std::io;
use std::mem;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::RawFd;

/// Where a datagram arrived.
#[derive(Debug, Clone, Copy)]
pub struct RecvMeta6 {
    pub len: usize,
    /// The sender, with its scope (interface) when link-local.
    pub src: SocketAddrV6,
    pub ifindex: u32,
    /// The destination address in the IPv6 header.
    pub dst: Ipv6Addr,
}

/// Turns on IPV6_RECVPKTINFO reporting for a socket.
pub fn enable(fd: RawFd) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: valid fd, option value is a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const CMSG_SPACE: usize = 64;

fn msghdr(
    addr: &mut libc::sockaddr_in6,
    iov: &mut libc::iovec,
    control: &mut [u8],
) -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr; the fields set next give it its
    // pointers and lengths.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = addr as *mut _ as *mut libc::c_void;
    msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.len() as _;
    msg
}

/// Datagrams read by one `recvmmsg`, as [`super::pktinfo::RecvBatch`].
pub struct RecvBatch6 {
    slot: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_in6>,
    controls: Vec<[u8; CMSG_SPACE]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    metas: Vec<Option<RecvMeta6>>,
}

impl RecvBatch6 {
    /// Room for `count` datagrams of up to `slot` bytes each.
    pub fn new(count: usize, slot: usize) -> Self {
        let count = count.max(1);
        let slot = slot.max(1);
        // SAFETY: all-zero is a valid sockaddr_in6, iovec and mmsghdr;
        // `recv` points them at this batch's storage before each use.
        let (addr, iov, hdr) = unsafe { (mem::zeroed(), mem::zeroed(), mem::zeroed()) };
        RecvBatch6 {
            slot,
            bufs: vec![0u8; count * slot],
            addrs: vec![addr; count],
            controls: vec![[0u8; CMSG_SPACE]; count],
            iovs: vec![iov; count],
            hdrs: vec![hdr; count],
            metas: vec![None; count],
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// One `recvmmsg` on a non-blocking socket: how many datagrams arrived
    /// (at least one), or `WouldBlock` when the socket is empty.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let count = self.capacity();
        for i in 0..count {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * self.slot..].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.slot,
            };
            let msg = msghdr(&mut self.addrs[i], &mut self.iovs[i], &mut self.controls[i]);
            self.hdrs[i] = libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            };
        }
        // SAFETY: every header points at storage owned by `self`, which is
        // neither moved nor resized during the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            let hdr = &self.hdrs[i];
            self.metas[i] = if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                None
            } else {
                // SAFETY: the kernel filled this header's address and
                // control area; `parse` reads only within msg_controllen.
                Some(unsafe { parse(&hdr.msg_hdr, &self.addrs[i], hdr.msg_len as usize) })
            };
        }
        Ok(n)
    }

    /// Datagram `i` of the last `recv`, unless it was truncated.
    pub fn get(&self, i: usize) -> Option<(&[u8], RecvMeta6)> {
        let meta = (*self.metas.get(i)?)?;
        let start = i * self.slot;
        Some((&self.bufs[start..start + meta.len.min(self.slot)], meta))
    }
}

/// # Safety
/// `msg` must be a header the kernel just filled, with its control pointer
/// and length still valid.
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
            let info = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in6_pktinfo);
            meta.ifindex = info.ipi6_ifindex;
            meta.dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
        }
        cmsg = libc::CMSG_NXTHDR(msg, cmsg);
    }
    meta
}

/// One datagram for [`send_batch`].
pub struct Outgoing6<'a> {
    pub packet: &'a [u8],
    pub to: SocketAddrV6,
    pub ifindex: u32,
    /// Our address the query was sent to; the reply's source.
    pub from: Ipv6Addr,
}

const SEND_BATCH: usize = 64;

/// Sends every datagram with its source address and interface
/// (IPV6_PKTINFO), up to [`SEND_BATCH`] per `sendmmsg`. A datagram the
/// kernel refuses goes to `on_error` and the rest are still sent.
pub fn send_batch(
    fd: RawFd,
    out: &[Outgoing6<'_>],
    mut on_error: impl FnMut(SocketAddrV6, io::Error),
) {
    // SAFETY: all-zero is a valid sockaddr_in6, iovec and mmsghdr.
    let (addr0, iov0, hdr0) = unsafe { (mem::zeroed(), mem::zeroed(), mem::zeroed()) };
    let mut addrs: [libc::sockaddr_in6; SEND_BATCH] = [addr0; SEND_BATCH];
    let mut iovs: [libc::iovec; SEND_BATCH] = [iov0; SEND_BATCH];
    let mut controls = [[0u8; CMSG_SPACE]; SEND_BATCH];
    let mut hdrs: [libc::mmsghdr; SEND_BATCH] = [hdr0; SEND_BATCH];
    for chunk in out.chunks(SEND_BATCH) {
        for (i, o) in chunk.iter().enumerate() {
            addrs[i] = sockaddr(o.to);
            iovs[i] = libc::iovec {
                iov_base: o.packet.as_ptr() as *mut libc::c_void,
                iov_len: o.packet.len(),
            };
            let mut msg = msghdr(&mut addrs[i], &mut iovs[i], &mut controls[i]);
            // SAFETY: the control area holds one in6_pktinfo, which
            // CMSG_FIRSTHDR checks against msg_controllen.
            if !unsafe { fill_pktinfo(&mut msg, o.ifindex, o.from) } {
                on_error(o.to, io::Error::other("no room for IPV6_PKTINFO"));
                msg.msg_controllen = 0;
            }
            hdrs[i] = libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            };
        }
        let mut done = 0;
        while done < chunk.len() {
            // SAFETY: headers `done..chunk.len()` point at the arrays above
            // and at the caller's packets, all alive across the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[done..].as_mut_ptr(),
                    (chunk.len() - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                on_error(chunk[done].to, io::Error::last_os_error());
                done += 1;
            } else {
                done += (n as usize).max(1);
            }
        }
    }
}

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

/// # Safety
/// `msg.msg_control` must point at `CMSG_SPACE` writable bytes.
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
