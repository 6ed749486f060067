//! The loudest few speakers, for large audio meetings: only their audio is forwarded, which keeps a
//! receiver's audio downlink within the large-call budget.
//!
//! Levels come from the RFC 6464 header extension (0 dBov loudest .. 127 silence). Each speaker's
//! loudness is smoothed with an exponential decay (time constant [`SMOOTHING`]), so a cough does not
//! take a slot and DTX silence (no packets at all) fades a speaker out. A newcomer takes a slot from the
//! quietest selected speaker only when it is louder by [`SWAP_MARGIN`] and that speaker has held the
//! slot for [`MIN_HOLD`]: people talking over each other do not make the selection flap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use convene_core::AttendeeId;

/// Time constant of the loudness smoothing.
pub const SMOOTHING: Duration = Duration::from_millis(300);
/// How much louder (in dB of smoothed loudness) a newcomer must be to take a slot.
pub const SWAP_MARGIN: f64 = 6.0;
/// How long a selected speaker keeps its slot before anyone may take it.
pub const MIN_HOLD: Duration = Duration::from_millis(1000);
/// Below this smoothed loudness (dB above silence) a speaker is not speaking.
pub const SPEAKING_FLOOR: f64 = 20.0;

#[derive(Debug, Clone, Copy)]
struct Level {
    /// Smoothed loudness in dB above silence (0 = silence, 127 = 0 dBov).
    loudness: f64,
    at: Instant,
}

impl Level {
    fn at(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.loudness * (-dt / SMOOTHING.as_secs_f64()).exp()
    }
}

/// Tracks levels and the current selection of up to `slots` speakers.
#[derive(Debug)]
pub struct SpeakerSelector {
    slots: usize,
    levels: HashMap<AttendeeId, Level>,
    /// Selected speakers and since when.
    selected: Vec<(AttendeeId, Instant)>,
}

impl SpeakerSelector {
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            levels: HashMap::new(),
            selected: Vec::with_capacity(slots),
        }
    }

    /// Change the number of slots (the meeting grew or shrank); extra speakers leave the quietest first.
    pub fn set_slots(&mut self, slots: usize, now: Instant) {
        self.slots = slots;
        while self.selected.len() > slots {
            self.drop_quietest(now);
        }
    }

    /// One audio packet's RFC 6464 level (0..=127 dBov, 0 loudest).
    pub fn observe(&mut self, who: AttendeeId, level_dbov: u8, now: Instant) {
        self.observe_window(who, f64::from(level_dbov), 1, now);
    }

    /// `packets` audio packets (20 ms each) that averaged `mean_level_dbov`, ending at `now`: what a
    /// shard collects between ticks, so the packet path only adds to a sum.
    pub fn observe_window(
        &mut self,
        who: AttendeeId,
        mean_level_dbov: f64,
        packets: u32,
        now: Instant,
    ) {
        if packets == 0 {
            return;
        }
        let instant = 127.0 - mean_level_dbov.clamp(0.0, 127.0);
        let entry = self.levels.entry(who).or_insert(Level {
            loudness: 0.0,
            at: now,
        });
        let decayed = entry.at(now);
        // Each packet pulls the smoothed value toward itself by the share of one packet time (20 ms).
        let keep = (-0.020 / SMOOTHING.as_secs_f64())
            .exp()
            .powi(packets.min(10_000) as i32);
        entry.loudness = decayed + (1.0 - keep) * (instant - decayed);
        entry.at = now;
    }

    /// The attendee left: free its slot.
    pub fn remove(&mut self, who: AttendeeId) {
        self.levels.remove(&who);
        self.selected.retain(|(a, _)| *a != who);
    }

    fn loudness(&self, who: AttendeeId, now: Instant) -> f64 {
        self.levels.get(&who).map_or(0.0, |l| l.at(now))
    }

    fn drop_quietest(&mut self, now: Instant) {
        if let Some(i) = (0..self.selected.len()).min_by(|&a, &b| {
            self.loudness(self.selected[a].0, now)
                .total_cmp(&self.loudness(self.selected[b].0, now))
        }) {
            self.selected.swap_remove(i);
        }
    }

    /// Re-evaluate the selection at `now` and return it (in no particular order).
    pub fn update(&mut self, now: Instant) -> &[(AttendeeId, Instant)] {
        // Candidates not selected, loudest first.
        let mut candidates: Vec<(AttendeeId, f64)> = self
            .levels
            .keys()
            .filter(|a| !self.selected.iter().any(|(s, _)| s == *a))
            .map(|&a| (a, self.loudness(a, now)))
            .filter(|&(_, l)| l >= SPEAKING_FLOOR)
            .collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (who, loudness) in candidates {
            if self.selected.len() < self.slots {
                self.selected.push((who, now));
                continue;
            }
            let Some((i, weakest)) = self
                .selected
                .iter()
                .enumerate()
                .map(|(i, (a, since))| (i, (self.loudness(*a, now), *since)))
                .min_by(|a, b| a.1.0.total_cmp(&b.1.0))
            else {
                break;
            };
            let (weakest_loudness, since) = weakest;
            if loudness >= weakest_loudness + SWAP_MARGIN && now >= since + MIN_HOLD {
                self.selected[i] = (who, now);
            }
        }
        &self.selected
    }

    /// Whether `who` is selected now (after the last [`update`](Self::update)).
    pub fn is_selected(&self, who: AttendeeId) -> bool {
        self.selected.iter().any(|(a, _)| *a == who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u32) -> AttendeeId {
        AttendeeId::from_raw(n)
    }

    /// Feed `who` packets at `dbov` every 20 ms for `ms`, starting at `t`; returns the end time.
    fn talk(s: &mut SpeakerSelector, who: &[(AttendeeId, u8)], t: Instant, ms: u64) -> Instant {
        let mut now = t;
        for _ in 0..ms / 20 {
            for &(w, level) in who {
                s.observe(w, level, now);
            }
            now += Duration::from_millis(20);
        }
        now
    }

    fn selected(s: &mut SpeakerSelector, now: Instant) -> Vec<u32> {
        let mut v: Vec<u32> = s
            .update(now)
            .iter()
            .map(|(a, _)| a.to_string()[2..].parse::<u32>().unwrap_or(0))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_loudest_fill_the_slots_and_silence_does_not() {
        let t0 = Instant::now();
        let mut s = SpeakerSelector::new(3);
        let now = talk(
            &mut s,
            &[(a(1), 20), (a(2), 30), (a(3), 40), (a(4), 50), (a(5), 127)],
            t0,
            600,
        );
        assert_eq!(selected(&mut s, now), vec![1, 2, 3]);
        assert!(!s.is_selected(a(5)));
    }

    #[test]
    fn a_cough_does_not_take_a_slot_but_a_sustained_louder_voice_does() {
        let t0 = Instant::now();
        let mut s = SpeakerSelector::new(1);
        let now = talk(&mut s, &[(a(1), 50)], t0, 2000);
        assert_eq!(selected(&mut s, now), vec![1]);
        // 40 ms of a loud cough from #2 while #1 keeps talking.
        let now = talk(&mut s, &[(a(1), 50), (a(2), 10)], now, 40);
        assert_eq!(selected(&mut s, now), vec![1], "a cough is smoothed away");
        // #2 talks loudly for a second: it takes over.
        let now = talk(&mut s, &[(a(1), 50), (a(2), 10)], now, 1000);
        assert_eq!(selected(&mut s, now), vec![2]);
    }

    #[test]
    fn a_fresh_speaker_holds_its_slot_for_a_moment() {
        let t0 = Instant::now();
        let mut s = SpeakerSelector::new(1);
        let now = talk(&mut s, &[(a(1), 60)], t0, 400);
        assert_eq!(selected(&mut s, now), vec![1]);
        // Much louder #2 right away: #1 was selected < MIN_HOLD ago, so it stays...
        let now = talk(&mut s, &[(a(2), 5)], now, 300);
        assert_eq!(selected(&mut s, now), vec![1]);
        // ...until its hold (from its selection at 400 ms) is over.
        let now = talk(&mut s, &[(a(2), 5)], now, 800);
        assert_eq!(selected(&mut s, now), vec![2]);
    }

    #[test]
    fn similar_voices_do_not_flap() {
        let t0 = Instant::now();
        let mut s = SpeakerSelector::new(1);
        let mut now = talk(&mut s, &[(a(1), 40), (a(2), 42)], t0, 1500);
        let first = selected(&mut s, now);
        let mut changes = 0;
        for i in 0..20 {
            // Their levels alternate by 2 dB every 200 ms: within the margin.
            let (l1, l2) = if i % 2 == 0 { (40, 42) } else { (42, 40) };
            now = talk(&mut s, &[(a(1), l1), (a(2), l2)], now, 200);
            if selected(&mut s, now) != first {
                changes += 1;
            }
        }
        assert_eq!(changes, 0);
    }

    #[test]
    fn dtx_silence_fades_a_speaker_out_and_leaving_frees_the_slot() {
        let t0 = Instant::now();
        let mut s = SpeakerSelector::new(1);
        let now = talk(&mut s, &[(a(1), 30)], t0, 1500);
        assert_eq!(selected(&mut s, now), vec![1]);
        // #1 stops sending (DTX); #2 starts quietly but steadily.
        let now = talk(&mut s, &[(a(2), 60)], now + Duration::from_secs(2), 1200);
        assert_eq!(selected(&mut s, now), vec![2]);
        s.remove(a(2));
        assert!(selected(&mut s, now).is_empty() || !s.is_selected(a(2)));
    }

    #[test]
    fn shrinking_drops_the_quietest() {
        let t0 = Instant::now();
        let mut s = SpeakerSelector::new(3);
        let now = talk(&mut s, &[(a(1), 20), (a(2), 30), (a(3), 40)], t0, 600);
        s.update(now);
        s.set_slots(2, now);
        assert_eq!(selected(&mut s, now), vec![1, 2]);
    }
}
