//! The bounded dedupe window of a source: the ids it handed out most recently, so that a
//! listing polled again (or a stream resumed a little early) does not repeat posts.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

/// The last `capacity` ids seen, oldest forgotten first. Serialized as the list of ids,
/// oldest first, so that it travels in a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct SeenWindow {
    order: VecDeque<String>,
    members: HashSet<String>,
    capacity: usize,
}

impl SeenWindow {
    /// An empty window of `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ..Self::default()
        }
    }

    /// Changes the capacity, forgetting the oldest ids beyond it.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self.trim();
        self
    }

    pub fn contains(&self, id: &str) -> bool {
        self.members.contains(id)
    }

    /// Remembers `id`; `false` if it was already there.
    pub fn insert(&mut self, id: &str) -> bool {
        if !self.members.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        self.trim();
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn trim(&mut self) {
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.members.remove(&oldest);
            }
        }
    }
}

impl From<Vec<String>> for SeenWindow {
    fn from(ids: Vec<String>) -> Self {
        let mut window = SeenWindow::new(ids.len());
        for id in ids {
            window.insert(&id);
        }
        window
    }
}

impl From<SeenWindow> for Vec<String> {
    fn from(window: SeenWindow) -> Self {
        window.order.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_and_round_trips() {
        let mut seen = SeenWindow::new(3);
        for id in ["a", "b", "c", "d"] {
            assert!(seen.insert(id));
        }
        assert!(!seen.insert("d"));
        assert!(!seen.contains("a"));
        assert!(seen.contains("b") && seen.contains("d"));
        let json = serde_json::to_string(&seen).unwrap();
        assert_eq!(json, r#"["b","c","d"]"#);
        let back: SeenWindow = serde_json::from_str(&json).unwrap();
        let mut back = back.with_capacity(2);
        assert_eq!(back.len(), 2);
        assert!(!back.contains("b"));
        back.insert("e");
        assert_eq!(Vec::<String>::from(back), ["d", "e"]);
    }
}
