//! Batched UDP with the arrival address: `recvmmsg` and `sendmmsg` with
//! IP_PKTINFO / IPV6_PKTINFO, written once for both families. Each family
//! ([`super::pktinfo::V4`], [`super::pktinfo6::V6`]) says how its socket
//! address and its packet-info control message look; the batching here is
//! monomorphised per family, so the IPv4 path keeps its fixed-size headers
//! and no per-datagram family test.

use std::fmt::Debug;
use std::io;
use std::mem;
use std::os::fd::RawFd;

/// Room for one packet-info control message of either family.
pub(super) const CMSG_SPACE: usize = 64;

/// An address family's socket address and packet-info message.
pub trait Family: Copy + Debug {
    /// `sockaddr_in` or `sockaddr_in6`.
    type Sock: Copy;
    type Addr: Copy + Debug;
    type Ip: Copy + Debug;

    fn sockaddr(a: Self::Addr) -> Self::Sock;

    /// The address if it is of this family.
    fn addr_of(a: std::net::SocketAddr) -> Option<Self::Addr>;
    fn ip_of(ip: std::net::IpAddr) -> Option<Self::Ip>;

    /// Where a received datagram came from and arrived at.
    ///
    /// # Safety
    /// `msg` must be a header the kernel just filled, with its control
    /// pointer and length still valid.
    unsafe fn parse(msg: &libc::msghdr, addr: &Self::Sock, len: usize) -> Meta<Self>;

    /// Points `msg`'s control area at one packet-info message asking for
    /// interface `ifindex` and source address `from`; false when there is
    /// no room.
    ///
    /// # Safety
    /// `msg.msg_control` must point at [`CMSG_SPACE`] writable bytes.
    unsafe fn fill_pktinfo(msg: &mut libc::msghdr, ifindex: u32, from: Self::Ip) -> bool;
}

/// Where a datagram arrived.
#[derive(Debug, Clone, Copy)]
pub struct Meta<F: Family> {
    pub len: usize,
    /// The sender (for IPv6 with its scope, when link-local).
    pub src: F::Addr,
    pub ifindex: u32,
    /// The destination address in the IP header.
    pub dst: F::Ip,
}

/// A msghdr over one address, one buffer and a control area. The caller
/// keeps all three alive across the syscall that uses it.
pub(super) fn msghdr<S>(addr: &mut S, iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr; the fields set next give it its
    // pointers and lengths.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = addr as *mut S as *mut libc::c_void;
    msg.msg_namelen = mem::size_of::<S>() as libc::socklen_t;
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.len() as _;
    msg
}

/// Datagrams read by one `recvmmsg`: every slot keeps its own buffer,
/// source address and packet-info control area, reused from call to call
/// so that a busy socket costs one syscall per batch and no allocation.
pub struct RecvBatch<F: Family> {
    slot: usize,
    bufs: Vec<u8>,
    addrs: Vec<F::Sock>,
    controls: Vec<[u8; CMSG_SPACE]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    metas: Vec<Option<Meta<F>>>,
}

impl<F: Family> RecvBatch<F> {
    /// Room for `count` datagrams of up to `slot` bytes each. The buffers
    /// are zeroed lazily by the allocator, so big slots cost address space
    /// rather than memory until a datagram fills them.
    pub fn new(count: usize, slot: usize) -> Self {
        let count = count.max(1);
        let slot = slot.max(1);
        // SAFETY: all-zero is a valid socket address of either family, a
        // valid iovec and a valid mmsghdr; `recv` points them at this
        // batch's storage before each use.
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
        // One mutable borrow per vector for the whole loop: indexing a Vec
        // again per slot would reborrow it whole and, under Rust's aliasing
        // rules, invalidate the pointers already stored in earlier headers.
        let slots = self
            .bufs
            .chunks_exact_mut(self.slot)
            .zip(&mut self.addrs)
            .zip(&mut self.iovs)
            .zip(&mut self.controls)
            .zip(&mut self.hdrs);
        for ((((buf, addr), iov), control), hdr) in slots {
            *iov = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            *hdr = libc::mmsghdr {
                msg_hdr: msghdr(addr, iov, control),
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
            // A datagram longer than its slot is dropped.
            self.metas[i] = if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                None
            } else {
                // SAFETY: the kernel filled this header's address and control
                // area; `parse` reads only within msg_controllen.
                Some(unsafe { F::parse(&hdr.msg_hdr, &self.addrs[i], hdr.msg_len as usize) })
            };
        }
        Ok(n)
    }

    /// Datagram `i` of the last `recv`, unless it was truncated.
    pub fn get(&self, i: usize) -> Option<(&[u8], Meta<F>)> {
        let meta = (*self.metas.get(i)?)?;
        let start = i * self.slot;
        Some((&self.bufs[start..start + meta.len.min(self.slot)], meta))
    }
}

/// One datagram for [`send_batch`]: to `to`, out of interface `ifindex`,
/// from our address `from` (the one the query was sent to).
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a, F: Family> {
    pub packet: &'a [u8],
    pub to: F::Addr,
    pub ifindex: u32,
    pub from: F::Ip,
}

/// Most datagrams handed to one `sendmmsg`.
const SEND_BATCH: usize = 64;

/// Sends every datagram with its source address and interface, up to
/// [`SEND_BATCH`] per `sendmmsg`. A datagram the kernel refuses is skipped
/// (the error goes to `on_error` with its destination) and the rest are
/// still sent. Taking an iterator lets a caller send straight from its own
/// queue, with no list built per call.
pub fn send_batch<'a, F: Family + 'a>(
    fd: RawFd,
    out: impl IntoIterator<Item = Outgoing<'a, F>>,
    mut on_error: impl FnMut(F::Addr, io::Error),
) {
    // SAFETY: all-zero is a valid socket address of either family, a
    // valid iovec and a valid mmsghdr.
    let (addr0, iov0, hdr0): (F::Sock, _, _) =
        unsafe { (mem::zeroed(), mem::zeroed(), mem::zeroed()) };
    let mut addrs: [F::Sock; SEND_BATCH] = [addr0; SEND_BATCH];
    let mut iovs: [libc::iovec; SEND_BATCH] = [iov0; SEND_BATCH];
    let mut controls = [[0u8; CMSG_SPACE]; SEND_BATCH];
    let mut hdrs: [libc::mmsghdr; SEND_BATCH] = [hdr0; SEND_BATCH];
    let mut tos: [Option<F::Addr>; SEND_BATCH] = [None; SEND_BATCH];
    let mut out = out.into_iter();
    loop {
        let mut count = 0;
        for o in out.by_ref().take(SEND_BATCH) {
            let i = count;
            count += 1;
            tos[i] = Some(o.to);
            addrs[i] = F::sockaddr(o.to);
            iovs[i] = libc::iovec {
                iov_base: o.packet.as_ptr() as *mut libc::c_void,
                iov_len: o.packet.len(),
            };
            let mut msg = msghdr(&mut addrs[i], &mut iovs[i], &mut controls[i]);
            // SAFETY: the control area is CMSG_SPACE bytes, more than one
            // packet-info message of either family needs.
            if !unsafe { F::fill_pktinfo(&mut msg, o.ifindex, o.from) } {
                on_error(o.to, io::Error::other("no room for the packet info"));
                msg.msg_controllen = 0;
            }
            hdrs[i] = libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            };
        }
        let mut done = 0;
        while done < count {
            // SAFETY: headers `done..count` point at the arrays above, at
            // `addrs` and at the caller's packets, all alive across the
            // call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[done..].as_mut_ptr(),
                    (count - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                // The first datagram left failed: report it and go past it.
                if let Some(to) = tos[done] {
                    on_error(to, io::Error::last_os_error());
                }
                done += 1;
            } else {
                done += (n as usize).max(1);
            }
        }
        if count < SEND_BATCH {
            return;
        }
    }
}
