//! Why a standby ref diverged from the source's, and what each side has that the other
//! lacks: the words `tozai mirror` and `tozai status` say about a diverged ref, and the
//! commits a `--force` discards.
//!
//! [`cause`] says which side moved, whenever that can be known, from the two values, the
//! source's history and the mirror's ledger (what it pushed there):
//!
//! | source | standby | cause |
//! |---|---|---|
//! | X (branch or tag) | a commit no source ref reaches, that the source never sent the cache, and that the mirror did not push | [`Cause::StandbyPushedTo`] |
//! | X, what the mirror pushed there (branch or tag) | a commit the source knows, that the mirror did not push | [`Cause::MovedOnStandby`] |
//! | X (branch) | a commit the source knows, or the mirror pushed; X is its ancestor | [`Cause::SourceRewound`] |
//! | X (branch) | a commit the source knows, or the mirror pushed; otherwise | [`Cause::SourceForcePushed`] |
//! | X (tag) | a commit the source knows, or the mirror pushed, an ancestor of X's | [`Cause::TagMovedForward`] |
//! | X (tag) | a commit the source knows, or the mirror pushed, otherwise | [`Cause::TagMoved`] |
//! | (none) | a value the mirror has no record of | [`Cause::MadeOnStandby`] |
//! | (none) | not the value the mirror last pushed there | [`Cause::MovedOnStandby`] |
//!
//! The rows are tried in this order: a standby that holds what the mirror pushed there
//! never blames the source, and a source that still holds exactly what the mirror pushed
//! (its ledger owns that value) never moved.
//!
//! "Known to the source" is reachability from the source's refs, or an object the mirror's
//! cache fetched from the source before ([`History::fetched_from_source`]: a commit a
//! force-push left behind), never the mere existence of an object in the cache: the
//! standby's diverged refs are fetched into the cache (to list their commits), so their
//! objects are there too. A tag is judged by the commits both sides' tags peel to.
//!
//! [`LeftRight`] holds both sides' commits as `git log --left-right STANDBY...SOURCE` lists
//! them (`<` only the standby has, `>` only the source has), at most [`LOG_COMMITS`] a side.
//!
//! ```
//! use tozai::divergence::{Cause, explain};
//! let id = |c: char| c.to_string().repeat(40).parse().unwrap();
//! assert_eq!(
//!     explain(Cause::SourceRewound, Some(&id('a')), &id('b')),
//!     "the source was rewound: its aaaaaaaaaaaa is an ancestor of the standby's bbbbbbbbbbbb"
//! );
//! ```

use serde::Serialize;

use crate::mirror::History;
use crate::refs::{CommitId, RefName};

/// Which side moved, for a standby ref the mirror leaves alone (or `--force` overwrites).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The standby holds a commit no source ref reaches, and the mirror did not push it:
    /// someone pushed to the standby.
    StandbyPushedTo,
    /// The standby holds a commit the source knows (or the mirror pushed), and the source's
    /// ref no longer contains it: the source was force-pushed.
    SourceForcePushed,
    /// As [`Cause::SourceForcePushed`], and the source's commit is an ancestor of the
    /// standby's: the source was rewound.
    SourceRewound,
    /// A tag moved forward at the source: the standby's commit is an ancestor of the
    /// source's. The mirror does not move tags (unless `--force`).
    TagMovedForward,
    /// A tag moved elsewhere at the source (or was made again at its commit).
    TagMoved,
    /// Not on the source, and the mirror has no record of pushing it: made on the standby
    /// (or pushed before the mirror kept records, then deleted at the source).
    MadeOnStandby,
    /// Moved on the standby since the mirror pushed it: the source deleted the ref, or still
    /// holds exactly what the mirror pushed there (its ledger owns the source's value, not
    /// the standby's).
    MovedOnStandby,
}

/// What is known of one diverged ref when its cause is decided.
pub struct Diverged<'a> {
    pub reference: &'a RefName,
    pub source: Option<&'a CommitId>,
    pub standby: &'a CommitId,
    /// The values the mirror's ledger says it may have left on this standby ref.
    pub owned: &'a [CommitId],
}

/// Which side moved (see the module's table). `source_tips` are the commits of every
/// source ref (peeled), for "known to the source".
pub fn cause(d: &Diverged<'_>, history: &impl History, source_tips: &[CommitId]) -> Cause {
    let Some(source) = d.source else {
        return if d.owned.is_empty() {
            Cause::MadeOnStandby
        } else {
            Cause::MovedOnStandby
        };
    };
    let standby = history.commit_of(d.standby);
    let known = d.owned.contains(d.standby)
        || history.fetched_from_source(d.standby)
        || standby
            .as_ref()
            .is_some_and(|c| history.reachable_from_any(c, source_tips));
    if !known {
        return Cause::StandbyPushedTo;
    }
    if d.owned.contains(source) && !d.owned.contains(d.standby) {
        // The source is still what the mirror pushed there: the standby moved.
        return Cause::MovedOnStandby;
    }
    let (Some(standby), Some(source)) = (standby, history.commit_of(source)) else {
        // The mirror pushed it, but the cache no longer has it: the source rewrote it.
        return if d.reference.is_tag() {
            Cause::TagMoved
        } else {
            Cause::SourceForcePushed
        };
    };
    match (d.reference.is_tag(), history.is_ancestor(&source, &standby)) {
        (true, _) if standby != source && history.is_ancestor(&standby, &source) => {
            Cause::TagMovedForward
        }
        (true, _) => Cause::TagMoved,
        (false, true) => Cause::SourceRewound,
        (false, false) => Cause::SourceForcePushed,
    }
}

/// The sentence that says which side moved, naming both values.
pub fn explain(cause: Cause, source: Option<&CommitId>, standby: &CommitId) -> String {
    let t = standby.short();
    let s = source.map_or("(none)", CommitId::short);
    match cause {
        Cause::StandbyPushedTo => {
            format!("the standby was pushed to: its {t} is unknown to the source (at {s})")
        }
        Cause::SourceForcePushed => {
            format!("the source was force-pushed: its {s} does not contain the standby's {t}")
        }
        Cause::SourceRewound => {
            format!("the source was rewound: its {s} is an ancestor of the standby's {t}")
        }
        Cause::TagMovedForward => format!(
            "the tag moved forward at the source: the standby's {t} is an ancestor of the source's {s}, and the mirror does not move tags"
        ),
        Cause::TagMoved => format!(
            "the tag moved at the source, from the standby's {t} to {s}, and the mirror does not move tags"
        ),
        Cause::MadeOnStandby => format!(
            "not on the source, and the mirror never pushed the standby's {t} (made on the standby?)"
        ),
        Cause::MovedOnStandby => match source {
            Some(s) => format!(
                "the standby was moved (to {t}) since the mirror pushed {}, which the source still has",
                s.short()
            ),
            None => format!(
                "deleted at the source, and moved on the standby (to {t}) since the mirror pushed it"
            ),
        },
    }
}

/// A diverged ref's lines: which side moved ([`explain`]), then both sides' commits
/// ([`LeftRight::lines`]) when they are known.
pub fn lines(
    cause: Cause,
    source: Option<&CommitId>,
    standby: &CommitId,
    log: Option<&LeftRight>,
) -> Vec<String> {
    let mut out = vec![explain(cause, source, standby)];
    out.extend(log.map(LeftRight::lines).unwrap_or_default());
    out
}

/// At most this many commits of each side are listed.
pub const LOG_COMMITS: usize = 10;
/// A subject is cut (with `…`) at this many bytes, here and in `tozai status`'s lists.
pub const SUBJECT_BYTES: usize = 200;

/// One commit of a side: its id and the first line of its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedCommit {
    pub commit: CommitId,
    pub subject: String,
}

impl LoggedCommit {
    /// `subject` cut to a bounded size.
    pub fn new(commit: CommitId, subject: &str) -> Self {
        Self {
            commit,
            subject: crate::text::cut(subject, SUBJECT_BYTES),
        }
    }
}

/// One side's commits: the newest first, at most [`LOG_COMMITS`], and how many there are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Side {
    pub commits: Vec<LoggedCommit>,
    pub total: u64,
}

impl Side {
    /// How many are not listed.
    pub fn more(&self) -> u64 {
        self.total.saturating_sub(self.commits.len() as u64)
    }
}

/// Both sides of a diverged ref, as `git log --left-right STANDBY...SOURCE` lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeftRight {
    /// Only on the standby (`<`): what a `--force` discards.
    pub standby_only: Side,
    /// Only on the source (`>`).
    pub source_only: Side,
}

impl LeftRight {
    /// The lines `< id subject` then `> id subject`, each side capped with
    /// `< ... and N more`. Subjects are quoted as [`quoted`](crate::text::quoted) does when
    /// they hold control characters.
    pub fn lines(&self) -> Vec<String> {
        let mut out = side_lines('<', &self.standby_only);
        out.extend(side_lines('>', &self.source_only));
        out
    }
}

fn side_lines(mark: char, side: &Side) -> Vec<String> {
    let mut out: Vec<String> = (side.commits.iter())
        .map(|c| {
            format!(
                "{mark} {} {}",
                c.commit.short(),
                crate::text::quoted(&c.subject)
            )
        })
        .collect();
    if side.more() > 0 {
        out.push(format!("{mark} ... and {} more", side.more()));
    }
    out
}

/// "1 commit", "3 commits".
pub fn commits(n: u64) -> String {
    if n == 1 {
        "1 commit".into()
    } else {
        format!("{n} commits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history of one-letter commits given as (ancestor, descendant) pairs; `T` is an
    /// annotated tag of `b`, and `x` is unknown (not in the cache).
    struct Pairs(&'static [(char, char)]);
    impl History for Pairs {
        fn is_ancestor(&self, a: &CommitId, d: &CommitId) -> bool {
            let (a, d) = (first(a), first(d));
            a != 'x' && d != 'x' && (a == d || self.0.contains(&(a, d)))
        }
        fn commit_of(&self, id: &CommitId) -> Option<CommitId> {
            match first(id) {
                'x' => None,
                'T' => Some(id_of('b')),
                _ => Some(id.clone()),
            }
        }
        fn fetched_from_source(&self, id: &CommitId) -> bool {
            first(id) == 'g'
        }
    }
    fn first(id: &CommitId) -> char {
        match id.as_str().as_bytes()[0] {
            b'f' => 'T',
            b'9' => 'x',
            b'7' => 'g',
            b => b as char,
        }
    }
    fn id_of(c: char) -> CommitId {
        let hex = match c {
            'T' => 'f',
            'x' => '9',
            'g' => '7',
            c => c,
        };
        hex.to_string().repeat(40).parse().unwrap()
    }

    // a <- b <- c on main; d rewrites b; e only on the standby (on top of a); g was on the
    // source once (the cache fetched it), on top of a.
    const H: Pairs = Pairs(&[
        ('a', 'b'),
        ('a', 'c'),
        ('b', 'c'),
        ('a', 'd'),
        ('a', 'e'),
        ('a', 'g'),
    ]);

    #[test]
    fn causes_table() {
        let (main, v1) = (
            RefName::branch("main").unwrap(),
            RefName::tag("v1").unwrap(),
        );
        type Row<'a> = (
            &'a str,
            &'a RefName,
            Option<char>,
            char,
            &'a str,
            &'a str,
            Cause,
        );
        // (what, ref, source, standby, owned, the source's tips, cause)
        #[rustfmt::skip]
        let rows: &[Row] = &[
            ("standby pushed to", &main, Some('c'), 'e', "c", "c", Cause::StandbyPushedTo),
            ("standby pushed to, no record", &main, Some('c'), 'e', "", "c", Cause::StandbyPushedTo),
            ("standby pushed to, not even in the cache", &main, Some('c'), 'x', "", "c", Cause::StandbyPushedTo),
            ("force-pushed, the mirror pushed the old value", &main, Some('d'), 'c', "c", "d", Cause::SourceForcePushed),
            ("force-pushed, another branch still has it", &main, Some('d'), 'c', "", "dc", Cause::SourceForcePushed),
            ("force-pushed, its old value gone from the cache", &main, Some('d'), 'x', "x", "d", Cause::SourceForcePushed),
            ("force-pushed, no record, the cache fetched it once", &main, Some('d'), 'g', "", "d", Cause::SourceForcePushed),
            ("rewound", &main, Some('a'), 'c', "c", "a", Cause::SourceRewound),
            ("tag moved forward", &v1, Some('c'), 'b', "", "c", Cause::TagMovedForward),
            ("annotated tag moved forward", &v1, Some('c'), 'T', "T", "c", Cause::TagMovedForward),
            ("tag moved elsewhere", &v1, Some('d'), 'b', "b", "dc", Cause::TagMoved),
            ("tag made again at its commit", &v1, Some('T'), 'b', "b", "c", Cause::TagMoved),
            ("tag made on the standby", &v1, Some('c'), 'e', "", "c", Cause::StandbyPushedTo),
            ("made on the standby", &main, None, 'e', "", "c", Cause::MadeOnStandby),
            ("moved on the standby", &main, None, 'e', "b", "c", Cause::MovedOnStandby),
            // The source still holds what the mirror pushed; the standby was moved to a
            // commit the source knows: forward, sideways, or a tag.
            ("moved forward on the standby", &main, Some('a'), 'c', "a", "c", Cause::MovedOnStandby),
            ("moved sideways on the standby", &main, Some('b'), 'd', "b", "bd", Cause::MovedOnStandby),
            ("tag moved back on the standby", &v1, Some('c'), 'a', "c", "c", Cause::MovedOnStandby),
            ("tag moved on the standby", &v1, Some('b'), 'c', "b", "c", Cause::MovedOnStandby),
            ("moved on the standby, to a commit the source lacks", &main, Some('c'), 'e', "c", "c", Cause::StandbyPushedTo),
            ("a push in flight: both values owned, the source rewound", &main, Some('b'), 'c', "bc", "b", Cause::SourceRewound),
        ];
        for (what, reference, source, standby, owned, tips, want) in rows {
            let owned: Vec<CommitId> = owned.chars().map(id_of).collect();
            let tips: Vec<CommitId> = tips.chars().map(id_of).collect();
            let source = source.map(id_of);
            let d = Diverged {
                reference,
                source: source.as_ref(),
                standby: &id_of(*standby),
                owned: &owned,
            };
            assert_eq!(cause(&d, &H, &tips), *want, "{what}");
        }
    }

    #[test]
    fn causes_serialize_in_snake_case() {
        let json = serde_json::to_string(&Cause::StandbyPushedTo).unwrap();
        assert_eq!(json, "\"standby_pushed_to\"");
    }

    #[test]
    fn lines_list_each_side_capped_with_their_count() {
        let c = |n: u8| LoggedCommit::new(format!("{n:02x}").repeat(20).parse().unwrap(), "fix");
        let log = LeftRight {
            standby_only: Side {
                commits: vec![c(1), LoggedCommit::new(c(2).commit, "red\u{1b}[31m")],
                total: 2,
            },
            source_only: Side {
                commits: vec![c(3)],
                total: 14,
            },
        };
        assert_eq!(
            log.lines(),
            [
                "< 010101010101 fix",
                "< 020202020202 \"red\\033[31m\"",
                "> 030303030303 fix",
                "> ... and 13 more",
            ]
        );
        assert!(LeftRight::default().lines().is_empty());
    }
}
