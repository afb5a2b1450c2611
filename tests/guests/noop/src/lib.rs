//! Test guest: a receiver whose `notify` returns at once. It measures the
//! host's per-call cost (instantiate, lift the notification, call) with no
//! plugin work on top, and reads no config so it runs under any instance.

use wasmon_sdk::receiver::{Failure, Guest, Notification};

struct Noop;

impl Guest for Noop {
    fn notify(_: Notification) -> Result<(), Failure> {
        Ok(())
    }
}

wasmon_sdk::export_receiver!(Noop);
