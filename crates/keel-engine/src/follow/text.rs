//! The text a run follower has passed on of the step in progress, so that what it gives of
//! a step adds up to the step's logged reply whatever live deltas it missed.

/// The text streamed for the step in progress, so that what a follower is given of a step
/// adds up to its logged reply whatever deltas it missed: after live updates were lost, the
/// step's later deltas are held back and the rest of its reply comes when it is logged.
#[derive(Default)]
pub(super) struct StreamedText {
    step: u32,
    pub(super) attempt: u32,
    text: String,
    /// Deltas of the attempt in progress were lost: what follows is not a continuation.
    broken: bool,
    /// The last step whose reply was logged: later deltas of it are stale.
    replied: u32,
}

impl StreamedText {
    pub(super) fn called(&mut self, step: u32, attempt: u32) {
        if (step, attempt) != (self.step, self.attempt) {
            (self.step, self.attempt) = (step, attempt);
            self.text.clear();
            self.broken = false;
        }
    }

    /// Live updates were lost: maybe deltas of the attempt in progress.
    pub(super) fn lost(&mut self) {
        self.broken = true;
    }

    /// Records a live delta; false when it is not to be passed on (its step replied, a later
    /// attempt began, or deltas before it were lost).
    pub(super) fn streamed(&mut self, step: u32, attempt: u32, text: &str) -> bool {
        if step <= self.replied || (step, attempt) < (self.step, self.attempt) {
            return false;
        }
        self.called(step, attempt);
        if self.broken {
            return false;
        }
        self.text.push_str(text);
        true
    }

    /// The step's text starts again (a failover mid-reply): what follows is whole again.
    pub(super) fn reset(&mut self, step: u32) -> bool {
        if step <= self.replied || step < self.step {
            return false;
        }
        self.text.clear();
        self.broken = false;
        true
    }

    /// The step's reply was logged: whether what was streamed must be discarded, and the part
    /// of `reply` not streamed yet.
    pub(super) fn replied(&mut self, step: u32, reply: &str) -> (bool, String) {
        let streamed = if step == self.step {
            std::mem::take(&mut self.text)
        } else {
            String::new()
        };
        self.replied = step;
        self.broken = false;
        match reply.strip_prefix(streamed.as_str()) {
            Some(rest) => (false, rest.to_string()),
            None => (true, reply.to_string()),
        }
    }
}
