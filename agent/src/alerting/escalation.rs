//! Escalation's schedule for one aggregation group (what the dispatcher
//! keeps per group): when the group was first paged, the steps already run,
//! and how late a held step ran. The dispatcher decides when a step is due
//! (here, and the ack the on-call layer reports) and sends it through the
//! escalation pipeline (`notify::Pipeline::escalation`).

use chrono::{DateTime, Utc};

use super::route::EscalationStep;

/// A group's escalation in one firing episode. It outlives a config reload
/// when the group does (see [`Dispatcher::take_over`](super::dispatch::Dispatcher::take_over)).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Escalation {
    /// When the group's firing alerts were first sent to its receiver,
    /// whether or not that got through: a receiver that is down is what
    /// escalation exists for. Step delays count from here.
    pub first_page: Option<DateTime<Utc>>,
    /// How far the schedule moved because a step ran late (an ack held
    /// it): the steps after a late one keep their configured spacing from
    /// it instead of all firing at once.
    pub slip: chrono::Duration,
    /// Steps already run, a prefix of the route's `escalation`.
    pub done: usize,
}

impl Escalation {
    /// When step `step` is due on the schedule (ignoring acks).
    pub fn due(&self, step: &EscalationStep) -> Option<DateTime<Utc>> {
        let delay = chrono::Duration::from_std(step.delay).ok()?;
        self.first_page?
            .checked_add_signed(self.slip)?
            .checked_add_signed(delay)
    }

    /// Step `done` runs at `now`: if it is late, so are the ones after it.
    pub fn ran(&mut self, step: &EscalationStep, now: DateTime<Utc>) {
        if let Some(due) = self.due(step) {
            if now > due {
                self.slip += now - due;
            }
        }
        self.done += 1;
    }

    /// This escalation under a route whose steps changed from `old` to
    /// `new` (a reload): the first page and the slip stay; it resumes after
    /// the last step of `new` that already ran (same receiver and delay),
    /// so no step already run pages again, and a new step placed before it
    /// is passed over rather than paged late.
    pub fn carried(&self, old: &[EscalationStep], new: &[EscalationStep]) -> Escalation {
        let done = if old == new {
            self.done
        } else {
            let ran = &old[..self.done.min(old.len())];
            new.iter()
                .rposition(|s| ran.contains(s))
                .map_or(0, |i| i + 1)
        };
        Escalation {
            done,
            ..self.clone()
        }
    }
}
