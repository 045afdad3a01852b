//! The DHCP server socket: UDP port 67 on the wildcard address (broadcasts
//! only arrive there), with IP_PKTINFO so each request says which
//! interface it came in on and each reply leaves from our address on that
//! network, as multi-homed routers need.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::engine::Reply;
use super::reply::Destination;

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

fn ifname_of(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has the IF_NAMESIZE bytes if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// Turns a reply to a client's hardware address into a unicast (after
/// writing the ARP entry the kernel needs for it) or, failing that, a
/// broadcast. Runs on the lease task's thread: after the privilege drop
/// only that thread keeps CAP_NET_ADMIN, which the ARP write needs.
pub fn resolve_hardware(fd: RawFd, r: &mut Reply) {
    if let Destination::Hardware { ip, htype, chaddr } = &r.to {
        let injected = ifname_of(r.ifindex)
            .is_some_and(|name| arp_inject(fd, &name, *ip, *htype, chaddr).is_ok());
        r.to = if injected {
            Destination::Unicast(*ip)
        } else {
            Destination::Broadcast
        };
    }
}

/// Sends `r` from our address on its network; false if the kernel refused.
pub fn deliver(fd: RawFd, r: &Reply) -> bool {
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
    let to = match &r.to {
        Destination::Relay(ip) => SocketAddrV4::new(*ip, SERVER_PORT),
        Destination::Unicast(ip) => SocketAddrV4::new(*ip, CLIENT_PORT),
        Destination::Broadcast => broadcast,
        // `resolve_hardware` ran before any reply got here.
        Destination::Hardware { .. } => broadcast,
    };
    match crate::net::pktinfo::send(fd, &r.packet, to, r.ifindex, r.from) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(target: "dhcp", "send to {to} failed: {e}");
            false
        }
    }
}
