//! Per-terminal hash chains: every record names its sequence number and the
//! id of the terminal's previous record, so deletion, reordering and forks
//! are detectable by anyone holding the records.
//!
//! Two tools share one vocabulary of defects:
//! * [`verify_chain`] audits a whole set of links in arrival order (the
//!   auditor's view, and the server's periodic check);
//! * [`ChainHead`] accepts links one at a time in order (the server's ingest
//!   path and the terminal's own bookkeeping).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use crate::ids::RecordId;
use crate::record::ChainLink;

/// Something wrong with a terminal's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainDefect {
    /// Sequence numbers `from..=to` are missing.
    Gap { from: u64, to: u64 },
    /// `seq` arrived after a later record, `after`, had already arrived.
    Reordered { seq: u64, after: u64 },
    /// Two different records claim the same sequence number (equivocation).
    Fork {
        seq: u64,
        first: RecordId,
        second: RecordId,
    },
    /// The same record arrived again.
    Duplicate { seq: u64, id: RecordId },
    /// The record at `seq` does not name the record at `seq - 1` as `prev`.
    BrokenLink {
        seq: u64,
        expected_prev: RecordId,
        found_prev: RecordId,
    },
    /// The first record (seq 1) names a previous record, or a later record
    /// names none.
    BadGenesis { seq: u64 },
}

impl ChainDefect {
    /// A stable machine name for the defect (used in findings and metrics).
    pub fn code(&self) -> &'static str {
        match self {
            ChainDefect::Gap { .. } => "gap",
            ChainDefect::Reordered { .. } => "reordered",
            ChainDefect::Fork { .. } => "fork",
            ChainDefect::Duplicate { .. } => "duplicate",
            ChainDefect::BrokenLink { .. } => "broken_link",
            ChainDefect::BadGenesis { .. } => "bad_genesis",
        }
    }
}

impl fmt::Display for ChainDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainDefect::Gap { from, to } if from == to => write!(f, "record {from} is missing"),
            ChainDefect::Gap { from, to } => write!(f, "records {from} to {to} are missing"),
            ChainDefect::Reordered { seq, after } => {
                write!(f, "record {seq} arrived after record {after}")
            }
            ChainDefect::Fork { seq, first, second } => write!(
                f,
                "two different records at sequence {seq}: {} and {}",
                first.short(),
                second.short()
            ),
            ChainDefect::Duplicate { seq, id } => {
                write!(f, "record {seq} ({}) arrived twice", id.short())
            }
            ChainDefect::BrokenLink {
                seq,
                expected_prev,
                found_prev,
            } => write!(
                f,
                "record {seq} links to {} instead of {}",
                found_prev.short(),
                expected_prev.short()
            ),
            ChainDefect::BadGenesis { seq } => {
                write!(f, "record {seq} has a wrong genesis link")
            }
        }
    }
}

/// What [`verify_chain`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// Distinct sequence numbers seen.
    pub records: usize,
    /// The highest sequence number seen.
    pub head: Option<u64>,
    /// Every defect, in the order: arrival defects (duplicate, fork,
    /// reordered) as they happened, then gaps and broken links by sequence.
    pub defects: Vec<ChainDefect>,
}

impl ChainReport {
    pub fn is_clean(&self) -> bool {
        self.defects.is_empty()
    }
}

/// Where verification starts: the genesis, or a trusted earlier position
/// (for example the last link the server already checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainAnchor {
    pub seq: u64,
    pub id: RecordId,
}

/// Audits a set of links in arrival order. With no anchor the chain must
/// start at sequence 1.
pub fn verify_chain(
    links: impl IntoIterator<Item = ChainLink>,
    anchor: Option<ChainAnchor>,
) -> ChainReport {
    let mut by_seq: BTreeMap<u64, ChainLink> = BTreeMap::new();
    let mut defects = Vec::new();
    let mut highest: Option<u64> = anchor.map(|a| a.seq);

    for link in links {
        match by_seq.entry(link.seq) {
            Entry::Occupied(existing) => {
                let first = existing.get().id;
                defects.push(if first == link.id {
                    ChainDefect::Duplicate {
                        seq: link.seq,
                        id: link.id,
                    }
                } else {
                    ChainDefect::Fork {
                        seq: link.seq,
                        first,
                        second: link.id,
                    }
                });
                continue;
            }
            Entry::Vacant(slot) => {
                slot.insert(link);
            }
        }
        if let Some(after) = highest
            && link.seq < after
        {
            defects.push(ChainDefect::Reordered {
                seq: link.seq,
                after,
            });
        }
        highest = Some(highest.map_or(link.seq, |h| h.max(link.seq)));
    }

    // Walk in sequence order from the anchor (or from the genesis).
    let mut previous: Option<(u64, RecordId)> = anchor.map(|a| (a.seq, a.id));
    let mut expected_next = anchor.map_or(1, |a| a.seq + 1);
    for link in by_seq.values() {
        if anchor.is_some_and(|a| link.seq <= a.seq) {
            continue;
        }
        if link.seq > expected_next {
            defects.push(ChainDefect::Gap {
                from: expected_next,
                to: link.seq - 1,
            });
            previous = None;
        }
        if (link.seq == 1) != (link.prev == RecordId::GENESIS) {
            defects.push(ChainDefect::BadGenesis { seq: link.seq });
        } else if let Some((prev_seq, prev_id)) = previous
            && prev_seq + 1 == link.seq
            && link.prev != prev_id
        {
            defects.push(ChainDefect::BrokenLink {
                seq: link.seq,
                expected_prev: prev_id,
                found_prev: link.prev,
            });
        }
        previous = Some((link.seq, link.id));
        expected_next = link.seq + 1;
    }

    ChainReport {
        records: by_seq.len(),
        head: by_seq
            .keys()
            .next_back()
            .copied()
            .max(anchor.map(|a| a.seq)),
        defects,
    }
}

/// The head of a chain that accepts links strictly in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainHead {
    /// Sequence number of the last accepted link (0 before the first).
    pub seq: u64,
    /// Id of the last accepted link (all zero before the first).
    pub id: RecordId,
}

/// What [`ChainHead::check_next`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainStep {
    /// The link extends the chain by one.
    Extends,
    /// The link is at or below the head: the caller must look up what is
    /// stored at that sequence number (duplicate or fork).
    AlreadyPast,
}

impl ChainHead {
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        id: RecordId::GENESIS,
    };

    /// Checks whether `link` may extend the chain. A link beyond the next
    /// sequence number is a gap; a link whose `prev` is not the head is a
    /// broken link (or a bad genesis).
    pub fn check_next(&self, link: &ChainLink) -> Result<ChainStep, ChainDefect> {
        if link.seq <= self.seq {
            return Ok(ChainStep::AlreadyPast);
        }
        if link.seq > self.seq + 1 {
            return Err(ChainDefect::Gap {
                from: self.seq + 1,
                to: link.seq - 1,
            });
        }
        if (link.seq == 1) != (link.prev == RecordId::GENESIS) {
            return Err(ChainDefect::BadGenesis { seq: link.seq });
        }
        if link.prev != self.id {
            return Err(ChainDefect::BrokenLink {
                seq: link.seq,
                expected_prev: self.id,
                found_prev: link.prev,
            });
        }
        Ok(ChainStep::Extends)
    }

    /// Checks and, if the link extends the chain, advances the head.
    pub fn advance(&mut self, link: &ChainLink) -> Result<ChainStep, ChainDefect> {
        let step = self.check_next(link)?;
        if step == ChainStep::Extends {
            self.seq = link.seq;
            self.id = link.id;
        }
        Ok(step)
    }

    /// Classifies a link at or below the head, given the id stored there.
    pub fn classify_past(link: &ChainLink, stored: RecordId) -> ChainDefect {
        if stored == link.id {
            ChainDefect::Duplicate {
                seq: link.seq,
                id: link.id,
            }
        } else {
            ChainDefect::Fork {
                seq: link.seq,
                first: stored,
                second: link.id,
            }
        }
    }
}
