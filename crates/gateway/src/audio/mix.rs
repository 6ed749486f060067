//! Mixing the meeting's speakers into the one stream a room system hears.
//!
//! Each remote speaker's decoded 48 kHz frame is added into an `i32` accumulator, and the sum is
//! clipped to 16 bits once at the end: clipping per addition would make the result depend on the
//! order of the speakers. Plain saturation rather than a limiter or gain scaling because the SFU
//! forwards only the few loudest speakers, so overload is rare and short, and scaling everyone down
//! would make a lone speaker quieter than in the browser.
//!
//! The device never hears itself: the SFU does not send a publication back to its own attendee, so
//! the room system's own voice is never among the mixed streams and needs no subtraction here.

/// A 20 ms mixing bus.
#[derive(Debug, Clone)]
pub struct Mixer {
    sum: Vec<i32>,
    inputs: usize,
}

impl Mixer {
    /// A bus for frames of `samples` samples.
    pub fn new(samples: usize) -> Self {
        Self {
            sum: vec![0; samples],
            inputs: 0,
        }
    }

    /// Start the next frame.
    pub fn clear(&mut self) {
        self.sum.fill(0);
        self.inputs = 0;
    }

    /// Add one speaker's frame; a shorter frame adds to the start, extra samples are ignored.
    pub fn add(&mut self, frame: &[i16]) {
        for (acc, &s) in self.sum.iter_mut().zip(frame) {
            *acc += i32::from(s);
        }
        self.inputs += 1;
    }

    /// How many frames were added since [`Mixer::clear`].
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The mix, clipped to 16 bits, into `out` (its length is the bus's).
    pub fn finish(&self, out: &mut [i16]) {
        for (o, &acc) in out.iter_mut().zip(&self.sum) {
            *o = acc.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_saturates_once() {
        let mut m = Mixer::new(4);
        m.add(&[1000, -1000, 30000, -30000]);
        m.add(&[24, 24, 30000, -30000]);
        // A third input pulling back under the limit shows clipping happens after the sum.
        m.add(&[0, 0, -30000, 0]);
        let mut out = [0i16; 4];
        m.finish(&mut out);
        assert_eq!(out, [1024, -976, 30000, i16::MIN]);
        assert_eq!(m.inputs(), 3);
        m.clear();
        m.finish(&mut out);
        assert_eq!((out, m.inputs()), ([0; 4], 0));
    }

    #[test]
    fn short_and_long_frames_do_not_panic() {
        let mut m = Mixer::new(3);
        m.add(&[1]);
        m.add(&[1, 2, 3, 4, 5]);
        let mut out = [0i16; 3];
        m.finish(&mut out);
        assert_eq!(out, [2, 2, 3]);
    }
}
