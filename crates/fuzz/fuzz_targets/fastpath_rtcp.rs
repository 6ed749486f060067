//! A subscriber's RTCP after the fast path decrypted it: anyone in a meeting can put any bytes inside
//! valid SRTCP, so the compound walk, every report's fields and what transport-wide feedback drives
//! (the send history's join, the estimator) must take anything.
#![no_main]

use std::time::{Duration, Instant};

use convene_media::fastpath::cc::{BweConfig, SendSideBwe};
use convene_media::fastpath::feedback::{self, Feedback};
use convene_media::fastpath::twcc::SendHistory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    // A history of sends the feedback can name: 1 200-byte packets a millisecond apart, some probes.
    let mut history = SendHistory::new(t0);
    for i in 0..300u64 {
        let probe = (i % 40 < 5).then_some((i / 40) as u32);
        history.record(t0 + Duration::from_millis(i), 1200, probe);
    }
    let mut bwe = SendSideBwe::new(BweConfig::default());
    // Subscribers want more than the start: the estimator probes and may run a trial fill.
    bwe.set_wanted(t0, 2_500_000.0);
    let mut results = Vec::new();
    let mut now = t0 + Duration::from_millis(300);
    for packet in feedback::packets(data) {
        match packet {
            Ok(Feedback::TransportCc(report)) => {
                let _ = report.reference();
                for arrival in report.arrivals() {
                    let _ = arrival;
                }
                history.join(history.feedback_of(&report, t0), &mut results);
                now += Duration::from_millis(50);
                bwe.on_feedback(now, &results);
                let _ = (bwe.target_bps(), bwe.acked_bps(), bwe.usage());
                while bwe.poll_probe(now).is_some() {}
                bwe.on_sent(now, 1200);
                let _ = (bwe.poll_fill(now), bwe.next_fill());
            }
            Ok(Feedback::Nack { entries, .. }) => feedback::nack_entries(entries).for_each(drop),
            Ok(Feedback::Fir { entries }) => feedback::fir_ssrcs(entries).for_each(drop),
            Ok(Feedback::Pli { .. } | Feedback::Remb { .. } | Feedback::Other) => {}
            Err(_) => break,
        }
    }
});
