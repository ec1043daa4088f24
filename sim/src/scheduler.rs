//! The seeded scheduler: one thread, no runtime. Each invocation is a future; the fakes of
//! tozai's ports return `Pending` once at every call ([`yield_now`]), so an invocation
//! stops at each await point, and the scheduler picks, at random, which of the pending
//! invocations moves next, or which due agenda item fires (a push, a delivery). Virtual
//! time moves on with every step, and jumps to the next agenda item when nothing else can
//! move: that is how leases run out and retries come due.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A running invocation.
pub type Task<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// What the scheduler drives: the agenda and the clock.
pub trait Agenda<'a> {
    fn now(&self) -> u64;
    fn set_now(&self, now: u64);
    /// How many agenda items are due (at or before now).
    fn due(&self) -> usize;
    /// The time of the earliest item not yet due, if any.
    fn next(&self) -> Option<u64>;
    /// Fires the `i`th due item; an invocation it began, to run.
    fn fire(&self, i: usize) -> Option<Task<'a>>;
}

/// Returns `Pending` once, then `Ready`: an await point the scheduler may switch at.
pub fn yield_now() -> impl Future<Output = ()> + Send {
    let mut yielded = false;
    std::future::poll_fn(move |_| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            Poll::Pending
        }
    })
}

/// The most steps a run may take before it counts as stuck.
pub const STEP_LIMIT: u64 = 2_000_000;

/// The scheduler of one run.
pub struct Scheduler<'a> {
    rng: fastrand::Rng,
    tasks: Vec<Task<'a>>,
    pub steps: u64,
}

impl<'a> Scheduler<'a> {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed ^ 0x5c4e),
            tasks: Vec::new(),
            steps: 0,
        }
    }

    /// Runs until nothing is pending and nothing is on the agenda. `Err` when the step
    /// limit was reached first.
    pub fn run(&mut self, agenda: &impl Agenda<'a>) -> Result<(), String> {
        let mut context = Context::from_waker(Waker::noop());
        loop {
            self.steps += 1;
            if self.steps > STEP_LIMIT {
                return Err(format!(
                    "no quiescence after {STEP_LIMIT} steps ({} invocations pending)",
                    self.tasks.len()
                ));
            }
            let due = agenda.due();
            let choices = self.tasks.len() + due;
            if choices == 0 {
                match agenda.next() {
                    Some(at) => {
                        agenda.set_now(at.max(agenda.now()));
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            let pick = self.rng.usize(..choices);
            if pick < self.tasks.len() {
                // Each step of an invocation (one service call) takes a little time.
                agenda.set_now(agenda.now() + self.rng.u64(5..250));
                if self.tasks[pick].as_mut().poll(&mut context).is_ready() {
                    drop(self.tasks.swap_remove(pick));
                }
            } else if let Some(task) = agenda.fire(pick - self.tasks.len()) {
                self.tasks.push(task);
            }
        }
    }
}
