//! Running as a system service, the way dnsmasq does: going into the
//! background with the start-up result reported by the waiting parent
//! ([`daemon`]), with no descriptor inherited from the starter ([`fds`]),
//! giving up root after the privileged sockets are bound ([`privileges`]),
//! handing the user its files first ([`handover`]), a pid file removed
//! again if the start fails after the drop ([`pid_file`]), logging to
//! syslog or a file, optionally through a queue ([`logging`],
//! [`syslog`]), and the signals an init system sends ([`signals`]).

pub mod daemon;
pub mod fds;
pub mod handover;
pub mod logging;
pub mod pid_file;
pub mod privileges;
pub mod signals;
pub mod syslog;
