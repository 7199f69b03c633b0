//! The clients a group task owes an answer, by the log index of their
//! proposal: an [`IndexDeque`], as the core's own record of proposals.

use super::apply_loop::ProposalReply;
use crate::core::Term;
use crate::core::index_deque::IndexDeque;

/// Waiting clients: index → (term, reply), sorted by index.
pub(crate) type PendingProposals = IndexDeque<(Term, ProposalReply)>;
