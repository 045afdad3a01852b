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
        let mut meta = RecvMeta {
            len: n as usize,
            src: SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                u16::from_be(addr.sin_port),
            ),
            ifindex: 0,
            dst: Ipv4Addr::UNSPECIFIED,
        };
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                let info =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in_pktinfo);
                meta.ifindex = info.ipi_ifindex as u32;
                meta.dst = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
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
        msg.msg_controllen = libc::CMSG_SPACE(mem::size_of::<libc::in_pktinfo>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other("no room for IP_PKTINFO"));
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
        if libc::sendmsg(fd, &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
