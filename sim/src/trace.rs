//! What happened in one run, in order: pushes, deliveries, the judges' decisions, the
//! store's writes, starts and mirror steps. The checker reads it; a violation prints it.

use std::fmt::Write as _;

use tozai::refs::RefName;

use crate::model::{C, Graph, Side, Writer};
use crate::world::Function;

/// Who a checkpoint belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Consumer {
    /// The sync decision.
    Sync,
    /// A pipeline target, by name.
    Target(String),
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum Action {
    Push {
        event: usize,
        side: Side,
        reference: RefName,
        old: Option<C>,
        new: Option<C>,
        by: Writer,
        kind: &'static str,
    },
    /// An event that no function receives (it still counts as the ref's last).
    Published {
        event: usize,
        detail_type: String,
        detail: String,
    },
    Invoked {
        invocation: u64,
        function: Function,
        event: usize,
        attempt: u8,
    },
    /// The judge's decision record.
    Decided {
        invocation: u64,
        record: String,
    },
    /// A diff the judge made (from its decision record): its base and why it chose it
    /// (`checkpoint`, `event_before`, `merge_base`, `whole_tree`).
    Diffed {
        invocation: u64,
        base: Option<C>,
        why: String,
    },
    Failed {
        invocation: u64,
        error: String,
        retry_at: Option<u64>,
    },
    /// A consumer's checkpoint moved to `commit`.
    Saved {
        invocation: u64,
        consumer: Consumer,
        side: Side,
        reference: RefName,
        commit: C,
        /// When the save recorded a claimed start: the invocation that claimed it (another
        /// one's, when a claim whose lease ran out was taken over and its run found).
        claimed_by: Option<u64>,
    },
    /// A claim on a target's start: made, given back.
    Claimed {
        invocation: u64,
        target: String,
        commit: C,
        outcome: String,
    },
    /// A start call: a new run (`real`) or one the service deduplicated.
    Started {
        invocation: u64,
        run: usize,
        real: bool,
    },
    Mirrored {
        invocation: u64,
        reference: RefName,
        status: String,
    },
    Fault {
        invocation: u64,
        call: String,
    },
    Note(String),
}

/// One trace line: its position in the total order, its virtual time and what happened.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub at: u64,
    pub action: Action,
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Primary => "tokyo",
        Side::Standby => "osaka",
    }
}

fn commit(c: Option<C>) -> String {
    c.map_or_else(|| "-".to_owned(), Graph::label)
}

/// `text` with every commit id the graph knows replaced by its label (`c12`).
pub fn labelled(text: &str, graph: &Graph) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if run == 40
            && let Ok(id) = text[i..i + 40].parse()
            && let Some(c) = graph.find(&id)
        {
            out.push_str(&Graph::label(c));
            i += 40;
        } else if run > 0 {
            out.push_str(&text[i..i + run]);
            i += run;
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

impl Entry {
    /// One line, for a person.
    pub fn show(&self, graph: &Graph, runs: &[crate::world::Run]) -> String {
        let mut line = format!("{:>5} {:>9.3}s  ", self.seq, self.at as f64 / 1000.0);
        let _ = match &self.action {
            Action::Push {
                event,
                side: s,
                reference,
                old,
                new,
                by,
                kind,
            } => write!(
                line,
                "PUSH     {} {} {} -> {} ({kind}, {by:?}) event e{event}",
                side(*s),
                reference.full(),
                commit(*old),
                commit(*new)
            ),
            Action::Published {
                event,
                detail_type,
                detail,
            } => write!(
                line,
                "PUBLISH  e{event} {detail_type} {}",
                labelled(detail, graph)
            ),
            Action::Invoked {
                invocation,
                function,
                event,
                attempt,
            } => write!(
                line,
                "INVOKE   #{invocation} {function} e{event} attempt {attempt}"
            ),
            Action::Diffed {
                invocation,
                base,
                why,
            } => write!(
                line,
                "DIFFED   #{invocation} from {} ({why})",
                commit(*base)
            ),
            Action::Decided { invocation, record } => {
                write!(line, "DECIDED  #{invocation} {}", labelled(record, graph))
            }
            Action::Failed {
                invocation,
                error,
                retry_at,
            } => write!(
                line,
                "FAILED   #{invocation} {} ({})",
                labelled(error, graph),
                retry_at.map_or("no retry".to_owned(), |t| format!(
                    "retry at {:.3}s",
                    t as f64 / 1000.0
                ))
            ),
            Action::Saved {
                invocation,
                consumer,
                side: s,
                reference,
                commit: c,
                claimed_by,
            } => write!(
                line,
                "SAVED    #{invocation} {consumer:?} {} {} at {}{}",
                side(*s),
                reference.full(),
                Graph::label(*c),
                match claimed_by {
                    Some(by) if by != invocation => format!(" (the run #{by} claimed)"),
                    _ => String::new(),
                }
            ),
            Action::Claimed {
                invocation,
                target,
                commit: c,
                outcome,
            } => write!(
                line,
                "CLAIM    #{invocation} {target} {} -> {outcome}",
                Graph::label(*c)
            ),
            Action::Started {
                invocation,
                run,
                real,
            } => {
                let r = &runs[*run];
                write!(
                    line,
                    "{}  #{invocation} {} ({}) {} at {} run {}",
                    if *real { "STARTED " } else { "DEDUPED " },
                    r.target,
                    r.kind,
                    r.reference.full(),
                    Graph::label(r.commit),
                    r.id
                )
            }
            Action::Mirrored {
                invocation,
                reference,
                status,
            } => write!(
                line,
                "MIRROR   #{invocation} {} {}",
                reference.full(),
                labelled(status, graph)
            ),
            Action::Fault { invocation, call } => write!(line, "FAULT    #{invocation} {call}"),
            Action::Note(text) => write!(line, "NOTE     {}", labelled(text, graph)),
        };
        line
    }
}
