//! Running as a system service, the way dnsmasq does: going into the
//! background with the start-up result reported by the waiting parent
//! ([`daemon`]), giving up root after the privileged sockets are bound
//! ([`privileges`]), logging to syslog or a file, optionally through a
//! queue ([`logging`], [`syslog`]), and the signals an init system sends
//! ([`signals`]).

pub mod daemon;
pub mod logging;
pub mod privileges;
pub mod signals;
pub mod syslog;
