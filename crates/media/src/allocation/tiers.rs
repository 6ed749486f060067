//! The guide's bandwidth tiers ("Network Configuration and Bandwidth Requirements", restated in
//! `media-targets.md`), as numbers the allocator uses.

/// Audio up per sender, and down per receiver in a 1:1 call (kbps).
pub const AUDIO_KBPS: u32 = 54;
/// Extra audio downlink a receiver may spend in a large call (50 callers), on top of [`AUDIO_KBPS`].
pub const LARGE_CALL_EXTRA_AUDIO_KBPS: u32 = 32;
/// Screen share at high quality, up and down.
pub const SCREEN_MAX_KBPS: u32 = 1200;
/// The lowest screen share rate before it is paused.
pub const SCREEN_MIN_KBPS: u32 = 320;
/// The fixed remote-control data flow, where the account allows it.
pub const REMOTE_CONTROL_KBPS: u32 = 800;
/// Most camera publishers in a meeting; later ones join audio-only for video.
pub const MAX_VIDEO_PUBLISHERS: usize = 16;

/// Camera video targets for a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraTier {
    /// What each camera publisher should send.
    pub up_kbps: u32,
    /// What a receiver should spend on each sender's camera.
    pub down_per_sender_kbps: u32,
}

/// The camera tier of a meeting with `attendees` people in it. `hd` is the meeting's HD mode, which the
/// guide gives for 1:1 calls; a larger meeting in HD mode keeps its size's tier (HD per sender at 16
/// senders would be 21 Mbps down).
pub fn camera_tier(attendees: usize, hd: bool) -> CameraTier {
    let (up, down) = match attendees {
        0 | 1 => (0, 0), // nobody to send to
        2 if hd => (1400, 1400),
        2 => (650, 650),
        3 | 4 => (450, 400),
        _ => (184, 134),
    };
    CameraTier {
        up_kbps: up,
        down_per_sender_kbps: down,
    }
}

/// Opus speech at the rate browsers use for voice (kbps, about 28 with overhead).
const OPUS_VOICE_KBPS: u32 = 28;
// Three voices fit the large-call audio budget.
const _: () = assert!(3 * OPUS_VOICE_KBPS <= AUDIO_KBPS + LARGE_CALL_EXTRA_AUDIO_KBPS);

/// How many speakers' audio a receiver gets in a meeting of `attendees`: everyone in small meetings;
/// in large ones as many as fit the large-call budget (54 + 32 kbps, with DTX silence costing little),
/// which is three concurrent voices at Opus speech rates.
pub fn forwarded_speakers(attendees: usize) -> usize {
    const LARGE_MEETING: usize = 8;
    const LOUDEST: usize = 3;
    if attendees <= LARGE_MEETING {
        attendees.saturating_sub(1)
    } else {
        LOUDEST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_by_meeting_size() {
        let t = |n, hd| {
            let c = camera_tier(n, hd);
            (c.up_kbps, c.down_per_sender_kbps)
        };
        assert_eq!(t(1, false), (0, 0));
        assert_eq!(t(2, false), (650, 650));
        assert_eq!(t(2, true), (1400, 1400));
        assert_eq!(t(3, false), (450, 400));
        assert_eq!(t(4, false), (450, 400));
        assert_eq!(t(4, true), (450, 400), "HD is a 1:1 tier");
        assert_eq!(t(5, false), (184, 134));
        assert_eq!(t(16, false), (184, 134));
        assert_eq!(t(50, false), (184, 134));
    }

    #[test]
    fn large_meetings_forward_the_loudest_few() {
        assert_eq!(forwarded_speakers(2), 1);
        assert_eq!(forwarded_speakers(8), 7);
        assert_eq!(forwarded_speakers(9), 3);
        assert_eq!(forwarded_speakers(50), 3);
    }
}
