//! Segment file names, as braft spells them.
//!
//! - `log_inprogress_{first:020}`: the open segment, being appended to;
//! - `log_{first:020}_{last:020}`: a closed segment holding `[first, last]`
//!   (inclusive, as in braft's names).

use std::fmt;

/// The name of a segment file, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentName {
    /// An open segment whose first entry is `first`.
    Open {
        /// The index of the segment's first entry.
        first: u64,
    },
    /// A closed segment holding `[first, last]`.
    Closed {
        /// The index of the segment's first entry.
        first: u64,
        /// The index of the segment's last entry (inclusive).
        last: u64,
    },
}

const OPEN_PREFIX: &str = "log_inprogress_";
const PREFIX: &str = "log_";
const DIGITS: usize = 20;

impl SegmentName {
    /// The index of the segment's first entry.
    pub fn first(self) -> u64 {
        match self {
            SegmentName::Open { first } | SegmentName::Closed { first, .. } => first,
        }
    }

    /// Parses a file name; `None` if it is not a well-formed segment name
    /// (wrong prefix, not exactly 20 digits, or `last < first`).
    pub fn parse(name: &str) -> Option<SegmentName> {
        if let Some(rest) = name.strip_prefix(OPEN_PREFIX) {
            return Some(SegmentName::Open {
                first: parse_digits(rest)?,
            });
        }
        let rest = name.strip_prefix(PREFIX)?;
        let (first, last) = rest.split_once('_')?;
        let (first, last) = (parse_digits(first)?, parse_digits(last)?);
        // An empty closed segment is never written: a closed one holds at
        // least its first entry.
        (first <= last).then_some(SegmentName::Closed { first, last })
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.len() != DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentName::Open { first } => write!(f, "{OPEN_PREFIX}{first:020}"),
            SegmentName::Closed { first, last } => write!(f, "{PREFIX}{first:020}_{last:020}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            SegmentName::Open { first: 1 },
            SegmentName::Closed {
                first: 1,
                last: 1000,
            },
            SegmentName::Closed {
                first: u64::MAX,
                last: u64::MAX,
            },
        ] {
            assert_eq!(SegmentName::parse(&name.to_string()), Some(name));
        }
        assert_eq!(
            SegmentName::Closed {
                first: 1,
                last: 1000
            }
            .to_string(),
            "log_00000000000000000001_00000000000000001000"
        );
    }

    #[test]
    fn garbage_names_are_refused() {
        for bad in [
            "log_",
            "log_inprogress_",
            "log_inprogress_12",
            "log_00000000000000000001",
            "log_00000000000000000002_00000000000000000001",
            "log_0000000000000000000a_00000000000000000001",
            "log_99999999999999999999_99999999999999999999",
            "log_+0000000000000000001_00000000000000000001",
            "notalog",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }
}
