//! The per-event random stream and the published generator's string and price helpers
//! (`nextString`, `nextExactString`, `nextExtra`, `nextPrice`).
//!
//! Each event draws from its own generator seeded by `mix(seed, event id)`, so any event can
//! be produced alone, in any order and on any subtask, and is the same every time.

use super::config::MIN_STRING_LENGTH;
use crate::source::generator::mix;

/// SplitMix64: small, fast, and good enough for synthetic data.
#[derive(Debug, Clone)]
pub(crate) struct Random(u64);

impl Random {
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        Random(mix(seed, stream))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is 0), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A price in cents, log-uniform between $1 and $1,000,000 (`nextPrice`).
    pub(crate) fn price(&mut self) -> u64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as u64
    }

    /// `3 ..= max - 1` random characters, one in 13 a space, trimmed (`nextString`).
    pub(crate) fn string(&mut self, max: u64) -> String {
        let len = self.below(max.saturating_sub(MIN_STRING_LENGTH)) + MIN_STRING_LENGTH;
        self.string_with(len, ' ').trim().to_string()
    }

    /// `len` characters, one in 13 `delimiter`, the others lowercase letters.
    pub(crate) fn string_with(&mut self, len: u64, delimiter: char) -> String {
        // 338 = 13 * 26 outcomes per character: 26 of them (one in 13) give the delimiter.
        self.chars(len, |v| {
            let v = (v * 338) >> 16;
            if v < 26 {
                delimiter
            } else {
                (b'a' + (v % 26) as u8) as char
            }
        })
    }

    /// Exactly `len` lowercase letters (`nextExactString`).
    pub(crate) fn letters(&mut self, len: u64) -> String {
        self.chars(len, |v| (b'a' + ((v * 26) >> 16) as u8) as char)
    }

    /// `len` characters, each `pick(v)` of a uniform 16-bit `v` (four per draw; scaling 16
    /// bits to 26 or 338 outcomes is uniform within 0.5 %).
    fn chars(&mut self, len: u64, pick: impl Fn(u32) -> char) -> String {
        let mut s = String::with_capacity(len as usize);
        let mut left = len;
        while left > 0 {
            let x = self.next_u64();
            for i in 0..left.min(4) {
                s.push(pick(((x >> (16 * i)) & 0xFFFF) as u32));
            }
            left -= left.min(4);
        }
        s
    }

    /// Padding that brings an event of `current` bytes to `average` bytes on average, ±20 %
    /// (`nextExtra`); empty when the event is already larger.
    pub(crate) fn extra(&mut self, current: u64, average: u64) -> String {
        if current > average {
            return String::new();
        }
        let average = average - current;
        let delta = (average as f64 * 0.2).round() as u64;
        let min = average - delta;
        let size = if delta == 0 { min } else { min + self.below(2 * delta) };
        self.letters(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_have_the_published_lengths() {
        let mut r = Random::new(1, 2);
        for _ in 0..1000 {
            let s = r.string(20);
            assert!(s.len() <= 19 && !s.starts_with(' ') && !s.ends_with(' '), "{s:?}");
            let l = r.letters(31);
            assert_eq!(l.len(), 31);
            assert!(l.bytes().all(|b| b.is_ascii_lowercase()));
            let e = r.extra(32, 100);
            assert!((54..=81).contains(&e.len()), "{}", e.len());
            let p = r.price();
            assert!((100..=100_000_000).contains(&p), "{p}");
            assert!(r.below(7) < 7);
        }
        assert_eq!(r.extra(120, 100), "");
        // Every letter about equally often; one in 13 characters of a string is the delimiter.
        let mut counts = [0usize; 27];
        let text = r.string_with(130_000, '_');
        for b in text.bytes() {
            counts[if b == b'_' { 26 } else { (b - b'a') as usize }] += 1;
        }
        assert!((9_500..10_500).contains(&counts[26]), "{} delimiters", counts[26]);
        assert!(counts[..26].iter().all(|&n| (4_300..4_900).contains(&n)), "{counts:?}");
    }
}
