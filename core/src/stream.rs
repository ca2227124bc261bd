//! What a cascade remembers from one frame to the next of a stream. Callers reset it where
//! footage is not continuous (a seek, a flush, a new file, a gap).

/// What a cascade remembers from one frame to the next of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamState {
    last_answer: Option<usize>,
}

impl StreamState {
    /// The class answered for the stream's previous frame, if there was one since the reset.
    pub fn last_answer(&self) -> Option<usize> {
        self.last_answer
    }

    /// Remembers the class answered for the frame just run.
    pub fn answered(&mut self, class_id: usize) {
        self.last_answer = Some(class_id);
    }
}
