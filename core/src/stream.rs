//! What a cascade remembers from one frame to the next of a stream: the last answer (which a
//! format-2 gate may read, and the format-3 stream rule reuses) and the stream rule's memory.
//! Callers reset it where footage is not continuous (a seek, a flush, a new file, a gap).

use crate::reuse::ReuseMemory;
use crate::rule::Verdict;

/// An answer the cascade computed: the stage where the frame left, and what it said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answered {
    pub stage: usize,
    pub verdict: Verdict,
}

/// What a cascade remembers from one frame to the next of a stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamState {
    last: Option<Answered>,
    pub(crate) reuse: ReuseMemory,
}

impl StreamState {
    /// The class answered for the stream's previous frame, if there was one since the reset.
    pub fn last_answer(&self) -> Option<usize> {
        self.last.map(|a| a.verdict.class_id)
    }

    /// The last answer the cascade computed (a reused answer is that one again).
    pub fn last(&self) -> Option<Answered> {
        self.last
    }

    /// Remembers the answer computed for the frame just run.
    pub fn answered(&mut self, answer: Answered) {
        self.last = Some(answer);
    }
}
