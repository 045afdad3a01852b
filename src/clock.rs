//! The wall clock, for the shells. Cores never call it: they are handed the
//! time, so tests and the simulation can drive them without waiting.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch; 0 if the clock is set before it, so a bad
/// clock shows up as old leases rather than a panic.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
