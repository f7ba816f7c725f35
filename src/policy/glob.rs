//! Glob matching for policy patterns.
//!
//! Command patterns work on dot-separated segments: `*` inside a segment
//! matches any run of characters within that segment (`chassis.*` matches
//! `chassis.status`, not `chassis.power.off`), and a segment that is exactly
//! `**` matches any number of segments, zero included (`chassis.**`).
//! BMC patterns are plain: `*` matches any run of characters.

use crate::ipmi::cmd::name::NameSegment;

/// A compiled command pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPattern {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    AnyDepth,
    Glob(String),
}

impl CommandPattern {
    /// Compiles a pattern; `**` must stand alone in its segment and no
    /// segment may be empty.
    pub fn parse(p: &str) -> Result<CommandPattern, String> {
        if p.is_empty() {
            return Err("empty command pattern".into());
        }
        let mut segments = Vec::new();
        for s in p.split('.') {
            if s.is_empty() {
                return Err(format!("command pattern {p:?} has an empty segment"));
            }
            if s == "**" {
                segments.push(Segment::AnyDepth);
            } else if s.contains("**") {
                return Err(format!(
                    "command pattern {p:?}: '**' must be a whole segment"
                ));
            } else if !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*')
            {
                return Err(format!("command pattern {p:?}: segment {s:?} may hold only letters, digits, '_' and '*'"));
            } else {
                segments.push(Segment::Glob(s.to_string()));
            }
        }
        Ok(CommandPattern { segments })
    }

    /// True when `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        // Command names have at most a handful of segments: split onto the
        // stack so that a decision does not allocate.
        let mut buf = [""; 8];
        let mut n = 0;
        for part in name.split('.') {
            if n == buf.len() {
                let parts: Vec<&str> = name.split('.').collect();
                return match_segments(&self.segments, &parts);
            }
            buf[n] = part;
            n += 1;
        }
        match_segments(&self.segments, &buf[..n])
    }
}

impl CommandPattern {
    /// True when some name of a generated family (see
    /// `ipmi::cmd::name::NAME_FAMILIES`) matches, for validating patterns.
    pub fn may_match_family(&self, family: &[NameSegment]) -> bool {
        match_family(&self.segments, family)
    }
}

fn match_family(pat: &[Segment], family: &[NameSegment]) -> bool {
    match pat.split_first() {
        None => family.is_empty(),
        Some((Segment::AnyDepth, rest)) => {
            (0..=family.len()).any(|skip| match_family(rest, &family[skip..]))
        }
        Some((Segment::Glob(g), rest)) => match family.split_first() {
            Some((seg, more)) => segment_may_match(g, *seg) && match_family(rest, more),
            None => false,
        },
    }
}

/// Whether glob segment `g` matches some value of a family segment.
fn segment_may_match(g: &str, seg: NameSegment) -> bool {
    match seg {
        NameSegment::Literal(l) => wildcard(g.as_bytes(), l.as_bytes()),
        NameSegment::Byte => {
            (0..=255u8).any(|b| wildcard(g.as_bytes(), format!("0x{b:02x}").as_bytes()))
        }
        // A glob of digits and stars matches some number unless its digits
        // force a leading zero.
        NameSegment::Decimal => {
            g.bytes().all(|b| b.is_ascii_digit() || b == b'*')
                && (g.starts_with('*') || !g.starts_with('0') || g == "0")
        }
    }
}

fn match_segments(pat: &[Segment], parts: &[&str]) -> bool {
    match pat.split_first() {
        None => parts.is_empty(),
        Some((Segment::AnyDepth, rest)) => {
            (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..]))
        }
        Some((Segment::Glob(g), rest)) => match parts.split_first() {
            Some((p, more)) => wildcard(g.as_bytes(), p.as_bytes()) && match_segments(rest, more),
            None => false,
        },
    }
}

/// `*`-only wildcard match over bytes, iterative with one backtrack point.
pub fn wildcard(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// A BMC name pattern (`*` matches anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcPattern(String);

impl BmcPattern {
    /// Compiles a BMC pattern.
    pub fn parse(p: &str) -> Result<BmcPattern, String> {
        if p.is_empty() {
            return Err("empty BMC pattern".into());
        }
        Ok(BmcPattern(p.to_string()))
    }

    /// True when `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        wildcard(self.0.as_bytes(), name.as_bytes())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Reference matcher, written for obviousness: recursion over characters
    /// with the segment rules spelled out.
    pub fn reference_command(p: &str, name: &str) -> bool {
        fn seg(p: &[char], s: &[char]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some(('*', rest)) => (0..=s.len()).any(|k| seg(rest, &s[k..])),
                Some((c, rest)) => s.first() == Some(c) && seg(rest, &s[1..]),
            }
        }
        fn segs(p: &[&str], n: &[&str]) -> bool {
            match p.split_first() {
                None => n.is_empty(),
                Some((&"**", rest)) => (0..=n.len()).any(|k| segs(rest, &n[k..])),
                Some((g, rest)) => {
                    !n.is_empty()
                        && seg(
                            &g.chars().collect::<Vec<_>>(),
                            &n[0].chars().collect::<Vec<_>>(),
                        )
                        && segs(rest, &n[1..])
                }
            }
        }
        let p: Vec<&str> = p.split('.').collect();
        let n: Vec<&str> = name.split('.').collect();
        segs(&p, &n)
    }

    #[test]
    fn issue_examples() {
        let star = CommandPattern::parse("chassis.*").unwrap();
        assert!(star.matches("chassis.status"));
        assert!(!star.matches("chassis.power.off"));
        let deep = CommandPattern::parse("chassis.**").unwrap();
        assert!(deep.matches("chassis.status") && deep.matches("chassis.power.off"));
        assert!(!deep.matches("mc.info"));
        assert!(CommandPattern::parse("chassis.power.o*")
            .unwrap()
            .matches("chassis.power.off"));
        assert!(CommandPattern::parse("raw.0x30.*")
            .unwrap()
            .matches("raw.0x30.0x01"));
        assert!(CommandPattern::parse("**")
            .unwrap()
            .matches("raw.0x30.0x01"));
        assert!(!CommandPattern::parse("chassis")
            .unwrap()
            .matches("chassis.status"));
        for bad in ["", "a..b", "a.**x", ".a", "a.b-c"] {
            assert!(CommandPattern::parse(bad).is_err(), "{bad}");
        }
        let b = BmcPattern::parse("node1*").unwrap();
        assert!(b.matches("node1") && b.matches("node17") && !b.matches("node2"));
        assert!(BmcPattern::parse("*.rack1").unwrap().matches("n1.rack1"));
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            Just("**".to_string()),
            "[a-c]{0,2}\\*?[a-c]{0,2}".prop_filter("non-empty", |s| !s.is_empty())
        ]
    }

    proptest! {
        #[test]
        fn command_matcher_agrees_with_the_reference(
            pat in prop::collection::vec(segment(), 1..4),
            name in prop::collection::vec("[a-c]{1,3}", 1..5),
        ) {
            let p = pat.join(".");
            let n = name.join(".");
            let compiled = CommandPattern::parse(&p).unwrap();
            prop_assert_eq!(compiled.matches(&n), reference_command(&p, &n), "{} vs {}", p, n);
        }

        #[test]
        fn bmc_matcher_agrees_with_the_reference(p in "[ab*]{1,6}", n in "[ab]{0,6}") {
            let reference = reference_command(&p.replace('.', "_"), &n);
            prop_assert_eq!(BmcPattern::parse(&p).unwrap().matches(&n), reference);
        }
    }
}
