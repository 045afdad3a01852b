//! The DHCP server socket: UDP port 67 on the wildcard address (broadcasts
//! only arrive there), with IP_PKTINFO so each request says which
//! interface it came in on and each reply leaves from our address on that
//! network, as multi-homed routers need.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

pub fn bind(port: u16) -> io::Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_broadcast(true)?;
    sock.set_nonblocking(true)?;
    // A burst of DISCOVERs must queue in the kernel, not be dropped there.
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    crate::net::pktinfo::enable(sock.as_raw_fd())?;
    sock.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    Ok(sock.into())
}

/// Puts `ip → hw` in the kernel's ARP table for `ifname`, so a reply can be
/// unicast to a client that has no address yet (what dnsmasq does too).
pub fn arp_inject(fd: RawFd, ifname: &str, ip: Ipv4Addr, htype: u8, hw: &[u8]) -> io::Result<()> {
    if hw.len() > 14 || ifname.len() >= 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "hardware address or interface name too long",
        ));
    }
    // SAFETY: all-zero arpreq is valid; the copies stay within the fixed
    // arrays (lengths checked above); the ioctl reads the struct only.
    unsafe {
        let mut req: libc::arpreq = mem::zeroed();
        let pa = &mut req.arp_pa as *mut libc::sockaddr as *mut libc::sockaddr_in;
        (*pa).sin_family = libc::AF_INET as libc::sa_family_t;
        (*pa).sin_addr.s_addr = u32::from(ip).to_be();
        req.arp_ha.sa_family = u16::from(htype);
        for (i, b) in hw.iter().enumerate() {
            req.arp_ha.sa_data[i] = *b as libc::c_char;
        }
        for (i, b) in ifname.bytes().enumerate() {
            req.arp_dev[i] = b as libc::c_char;
        }
        req.arp_flags = libc::ATF_COM;
        if libc::ioctl(fd, libc::SIOCSARP, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
