//! The capacity search: run N calls' rounds paced by the wall clock, one round every 20 ms on this
//! thread, and find the largest N whose every round is done before the next is due.
//!
//! A round is due at `start + k * 20 ms` and late if it ends after `start + (k + 1) * 20 ms`, when
//! every call's next frame is due: a room system would then hear a gap or a burst. A late round
//! does not skip the next one (the media task's ticker bursts to catch up), so an overloaded step
//! falls further behind and every round after counts as late.
//!
//! The search ramps N up through [`Search::ramp`], stops at the first step with a late round and
//! bisects between it and the last good step. A step with late rounds is run once more before it
//! counts: on a shared machine one preemption by another process makes a round late without the
//! bridges being at fault, and [`Step::preemptions`] and [`Step::rounds_over_budget_cpu`] say which it was.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::calls::{Calls, Flow};
use crate::cpu::{preemptions, thread_cpu};

/// One frame, one round.
pub const FRAME: Duration = Duration::from_millis(20);

/// How a search runs.
#[derive(Debug, Clone)]
pub struct Search {
    /// Call counts tried in order until one has late rounds.
    pub ramp: Vec<usize>,
    /// Rounds run (paced, unmeasured) after a resize, while the new calls' jitter buffers fill and
    /// their encoders settle.
    pub warmup: Duration,
    /// Rounds measured per step.
    pub measure: Duration,
    /// Bisection steps after the ramp.
    pub bisect: usize,
    /// An attempt stops early after this many late rounds: it is over capacity, not unlucky.
    pub give_up_after_late: usize,
    /// The calls tick at this many evenly spaced phases of the 20 ms (1: all at once, the worst
    /// alignment; calls that join at different times each tick on their own task's timer, spread
    /// over the 20 ms). A phase is late if its calls' work ends after their next frame is due.
    pub phases: usize,
}

/// One attempt at N calls.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub calls: usize,
    /// 1, or 2 for the repeat of a step that had late rounds.
    pub attempt: u32,
    pub rounds: usize,
    pub late_rounds: usize,
    /// Rounds whose CPU time alone exceeded 20 ms (late whatever else runs on the machine).
    pub rounds_over_budget_cpu: usize,
    /// Wall time of a round's work (from its start to its end, without the wait before it).
    pub round_ms_p50: f64,
    pub round_ms_p99: f64,
    pub round_ms_max: f64,
    /// This thread's CPU time over the measured rounds, per call and round.
    pub cpu_us_per_call_per_frame: f64,
    /// CPU time / wall time of the measured window: how busy the core was.
    pub core_busy: f64,
    /// Times the thread was preempted during the measured window.
    pub preemptions: i64,
    pub flow: Flow,
}

impl Step {
    pub fn passed(&self) -> bool {
        self.late_rounds == 0 && self.rounds > 0
    }
}

/// What a search found.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// The most calls with no late round (0 if even the first step had late rounds twice).
    pub max_calls: usize,
    /// The step that showed it.
    pub at_max: Option<Step>,
    /// Every attempt, in order.
    pub steps: Vec<Step>,
}

impl Search {
    /// Find the capacity of `calls`' codec. `progress` sees every attempt as it ends.
    pub fn run(
        &self,
        calls: &mut Calls,
        mut progress: impl FnMut(&Step),
    ) -> anyhow::Result<Capacity> {
        let mut steps = Vec::new();
        let mut best: Option<Step> = None;
        let mut failed: Option<usize> = None;
        let mut try_n = |n: usize, steps: &mut Vec<Step>| -> anyhow::Result<Option<Step>> {
            for attempt in 1..=2 {
                calls.resize(n)?;
                let step = self.attempt(calls, attempt);
                progress(&step);
                steps.push(step.clone());
                if step.passed() {
                    return Ok(Some(step));
                }
            }
            Ok(None)
        };
        for &n in &self.ramp {
            match try_n(n, &mut steps)? {
                Some(step) => best = Some(step),
                None => {
                    failed = Some(n);
                    break;
                }
            }
        }
        if let Some(mut hi) = failed {
            let mut lo = best.as_ref().map_or(0, |s| s.calls);
            for _ in 0..self.bisect {
                // Closer than 5 % (or 2 calls) is finer than the noise between runs.
                if hi - lo <= (lo / 20).max(2) {
                    break;
                }
                let mid = (lo + hi) / 2;
                match try_n(mid, &mut steps)? {
                    Some(step) => {
                        lo = mid;
                        best = Some(step);
                    }
                    None => hi = mid,
                }
            }
        }
        Ok(Capacity {
            max_calls: best.as_ref().map_or(0, |s| s.calls),
            at_max: best,
            steps,
        })
    }

    /// Warm up, then measure the calls as they are.
    fn attempt(&self, calls: &mut Calls, attempt: u32) -> Step {
        let warmup = rounds_in(self.warmup);
        let measured = rounds_in(self.measure);
        let mut round_wall = Vec::with_capacity(measured);
        let (mut late, mut over_cpu, mut cpu_total) = (0, 0, Duration::ZERO);
        let mut flow = Flow::default();
        let mut window: Option<(Instant, Duration, i64)> = None;
        // The first round a little ahead, so it is not late for the time the setup took.
        let start = Instant::now() + Duration::from_millis(2);
        let phases = self.phases.max(1);
        let phase_gap = FRAME / phases as u32;
        for k in 0..warmup + measured {
            if k == warmup {
                window = Some((Instant::now(), thread_cpu(), preemptions()));
            }
            let round_due = start + FRAME * k as u32;
            let (mut work, mut cpu, mut round_late) = (Duration::ZERO, Duration::ZERO, false);
            let mut out = Flow::default();
            for phase in 0..phases {
                let due = round_due + phase_gap * phase as u32;
                let now = Instant::now();
                if now < due {
                    std::thread::sleep(due - now);
                }
                let began = Instant::now();
                let cpu_before = thread_cpu();
                // The bridges' clock is the schedule, not the wall: a late round still codes the
                // frame it was due for, as a real call's task would.
                out += calls.round_part(due, phase, phases);
                cpu += thread_cpu() - cpu_before;
                let ended = Instant::now();
                work += ended - began;
                round_late |= ended > due + FRAME;
            }
            if k < warmup {
                continue;
            }
            flow += out;
            cpu_total += cpu;
            round_wall.push(work);
            late += usize::from(round_late);
            over_cpu += usize::from(cpu > FRAME);
            if late > self.give_up_after_late {
                break;
            }
        }
        let (wall, cpu_window, preempted) = match window {
            Some((t, c, p)) => (t.elapsed(), thread_cpu() - c, preemptions() - p),
            None => (Duration::ZERO, Duration::ZERO, 0),
        };
        let rounds = round_wall.len();
        round_wall.sort_unstable();
        let ms = |q: f64| {
            round_wall
                .get(((rounds as f64 - 1.0) * q).round() as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let work = (calls.len() * rounds) as f64;
        Step {
            calls: calls.len(),
            attempt,
            rounds,
            late_rounds: late,
            rounds_over_budget_cpu: over_cpu,
            round_ms_p50: ms(0.5),
            round_ms_p99: ms(0.99),
            round_ms_max: ms(1.0),
            cpu_us_per_call_per_frame: if work > 0.0 {
                cpu_total.as_secs_f64() * 1e6 / work
            } else {
                0.0
            },
            core_busy: if wall > Duration::ZERO {
                cpu_window.as_secs_f64() / wall.as_secs_f64()
            } else {
                0.0
            },
            preemptions: preempted,
            flow,
        }
    }
}

fn rounds_in(d: Duration) -> usize {
    (d.as_secs_f64() / FRAME.as_secs_f64()).round().max(1.0) as usize
}
