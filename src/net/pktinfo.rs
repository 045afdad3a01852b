//! UDP with IP_PKTINFO: each datagram says which interface and address it
//! arrived on, and each reply leaves from a chosen address on a chosen
//! interface, as multi-homed routers need. Shared by the DHCP and DNS shells.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

/// Where a datagram arrived.
#[derive(Debug, Clone, Copy)]
pub struct RecvMeta {
    pub len: usize,
    pub src: SocketAddrV4,
    pub ifindex: u32,
    /// The destination address in the IP header.
    pub dst: Ipv4Addr,
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

const CMSG_SPACE: usize = 64;

/// A msghdr over one address, one buffer and a control area. The caller
/// keeps all three alive across the syscall that uses it.
fn msghdr(addr: &mut libc::sockaddr_in, iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr; the fields set next give it its
    // pointers and lengths.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = addr as *mut _ as *mut libc::c_void;
    msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.len() as _;
    msg
}

/// One `recvmsg` on a non-blocking socket; `WouldBlock` when empty.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<RecvMeta> {
    // SAFETY: all-zero is a valid sockaddr_in / msghdr; pointers set below
    // reference locals that outlive the call; the kernel writes at most the
    // lengths we pass.
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
        let meta = parse(&msg, &addr, n as usize);
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
        let mut addr: libc::sockaddr_in = mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = to.port().to_be();
        addr.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        let mut iov = libc::iovec {
            iov_base: packet.as_ptr() as *mut libc::c_void,
            iov_len: packet.len(),
        };
        let mut control = [0u8; CMSG_SPACE];
        let mut msg = msghdr(&mut addr, &mut iov, &mut control);
        if !fill_pktinfo(&mut msg, ifindex, from) {
            return Err(io::Error::other("no room for IP_PKTINFO"));
        }
        if libc::sendmsg(fd, &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Datagrams read by one `recvmmsg`: every slot keeps its own buffer,
/// source address and IP_PKTINFO control area, reused from call to call
/// so that a busy socket costs one syscall per batch and no allocation.
pub struct RecvBatch {
    slot: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_in>,
    controls: Vec<[u8; CMSG_SPACE]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    metas: Vec<Option<RecvMeta>>,
}

impl RecvBatch {
    /// Room for `count` datagrams of up to `slot` bytes each. The buffers
    /// are zeroed lazily by the allocator, so big slots cost address space
    /// rather than memory until a datagram fills them.
    pub fn new(count: usize, slot: usize) -> Self {
        let count = count.max(1);
        let slot = slot.max(1);
        // SAFETY: all-zero is a valid sockaddr_in, iovec and mmsghdr; `recv`
        // points them at this batch's storage before each use.
        let (addr, iov, hdr) = unsafe { (mem::zeroed(), mem::zeroed(), mem::zeroed()) };
        RecvBatch {
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
        // neither moved nor resized during the call; the kernel writes at
        // most the lengths given.
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
            // A datagram longer than its slot is dropped, as `recv` refuses it.
            self.metas[i] = if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                None
            } else {
                // SAFETY: the kernel filled this header's address and control
                // area; `parse` reads only within msg_controllen.
                Some(unsafe { parse(&hdr.msg_hdr, &self.addrs[i], hdr.msg_len as usize) })
            };
        }
        Ok(n)
    }

    /// Datagram `i` of the last `recv`, unless it was truncated.
    pub fn get(&self, i: usize) -> Option<(&[u8], RecvMeta)> {
        let meta = (*self.metas.get(i)?)?;
        let start = i * self.slot;
        Some((&self.bufs[start..start + meta.len.min(self.slot)], meta))
    }
}

/// Where a received datagram came from and arrived at, from its header.
///
/// # Safety
/// `msg` must be a header the kernel just filled, with its control pointer
/// and length still valid.
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
            let info = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in_pktinfo);
            meta.ifindex = info.ipi_ifindex as u32;
            meta.dst = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
        }
        cmsg = libc::CMSG_NXTHDR(msg, cmsg);
    }
    meta
}

/// One datagram for [`send_batch`]: as the arguments of [`send`].
pub struct Outgoing<'a> {
    pub packet: &'a [u8],
    pub to: SocketAddrV4,
    pub ifindex: u32,
    pub from: Ipv4Addr,
}

/// Most datagrams handed to one `sendmmsg`.
const SEND_BATCH: usize = 64;

/// Sends every datagram as [`send`] would, up to [`SEND_BATCH`] per
/// `sendmmsg`. A datagram the kernel refuses is skipped (the error goes to
/// `on_error` with its destination) and the rest are still sent.
pub fn send_batch(
    fd: RawFd,
    out: &[Outgoing<'_>],
    mut on_error: impl FnMut(SocketAddrV4, io::Error),
) {
    // SAFETY: all-zero is a valid sockaddr_in, iovec and mmsghdr.
    let (addr0, iov0, hdr0) = unsafe { (mem::zeroed(), mem::zeroed(), mem::zeroed()) };
    let mut addrs: [libc::sockaddr_in; SEND_BATCH] = [addr0; SEND_BATCH];
    let mut iovs: [libc::iovec; SEND_BATCH] = [iov0; SEND_BATCH];
    let mut controls = [[0u8; CMSG_SPACE]; SEND_BATCH];
    let mut hdrs: [libc::mmsghdr; SEND_BATCH] = [hdr0; SEND_BATCH];
    for chunk in out.chunks(SEND_BATCH) {
        for (i, o) in chunk.iter().enumerate() {
            addrs[i].sin_family = libc::AF_INET as libc::sa_family_t;
            addrs[i].sin_port = o.to.port().to_be();
            addrs[i].sin_addr.s_addr = u32::from(*o.to.ip()).to_be();
            iovs[i] = libc::iovec {
                iov_base: o.packet.as_ptr() as *mut libc::c_void,
                iov_len: o.packet.len(),
            };
            let mut msg = msghdr(&mut addrs[i], &mut iovs[i], &mut controls[i]);
            // SAFETY: the control area holds one in_pktinfo (CMSG_SPACE is
            // larger than its CMSG_SPACE), which CMSG_FIRSTHDR checks.
            let ok = unsafe { fill_pktinfo(&mut msg, o.ifindex, o.from) };
            if !ok {
                on_error(o.to, io::Error::other("no room for IP_PKTINFO"));
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
                // The first datagram left failed: report it and go past it.
                on_error(chunk[done].to, io::Error::last_os_error());
                done += 1;
            } else {
                done += (n as usize).max(1);
            }
        }
    }
}

/// Points `msg`'s control area at one IP_PKTINFO asking for interface
/// `ifindex` and source address `from`; false when there is no room.
///
/// # Safety
/// `msg.msg_control` must point at `CMSG_SPACE` writable bytes.
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

    #[test]
    fn batches_carry_each_datagram_with_its_addresses() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(server.as_raw_fd()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
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
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(server.as_raw_fd()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
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
}
