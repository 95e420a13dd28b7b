//! Holds back streamed text that might be the start of a stop sequence, so a stop string is
//! never emitted, not even in part, while text that cannot begin one flows out at once.

pub(crate) struct StopFilter {
    stops: Vec<String>,
    held: String,
}

pub(crate) enum Filtered {
    /// Text safe to emit; generation goes on.
    Continue(String),
    /// A stop sequence was found: emit this text (what came before it) and end.
    Stop(String),
}

impl StopFilter {
    pub fn new(stops: &[String]) -> Self {
        StopFilter {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Filtered {
        self.held.push_str(text);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.held.truncate(at);
            return Filtered::Stop(std::mem::take(&mut self.held));
        }
        // Keep the longest suffix that is a proper prefix of some stop sequence.
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep_from);
        Filtered::Continue(std::mem::replace(&mut self.held, rest))
    }

    /// The held text at the end of the stream: it turned out not to be a stop sequence.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: Filtered) -> (String, bool) {
        match f {
            Filtered::Continue(t) => (t, false),
            Filtered::Stop(t) => (t, true),
        }
    }

    #[test]
    fn holds_a_possible_prefix_and_drops_the_stop_text() {
        let mut f = StopFilter::new(&["END".to_string()]);
        assert_eq!(text(f.push("hello E")), ("hello ".to_string(), false));
        assert_eq!(text(f.push("N")), (String::new(), false));
        assert_eq!(text(f.push("D and more")), (String::new(), true));
    }

    #[test]
    fn releases_held_text_that_was_not_a_stop() {
        let mut f = StopFilter::new(&["END".to_string()]);
        assert_eq!(text(f.push("an E")), ("an ".to_string(), false));
        assert_eq!(text(f.push("gg")), ("Egg".to_string(), false));
        assert_eq!(text(f.push("E")), (String::new(), false));
        assert_eq!(f.finish(), "E");
    }

    #[test]
    fn stop_inside_one_chunk_keeps_only_the_text_before_it() {
        let mut f = StopFilter::new(&["\n\n".to_string(), "Q:".to_string()]);
        assert_eq!(
            text(f.push("Paris.\n\nQ: next")),
            ("Paris.".to_string(), true)
        );
    }
}
