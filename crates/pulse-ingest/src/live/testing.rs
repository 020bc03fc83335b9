//! A live source run in a task for tests, its events handed out one by one.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::LiveSource;
use crate::SourceItem;

/// A source calling `next_events` until finished.
pub(crate) struct Running<S> {
    events: mpsc::UnboundedReceiver<SourceItem>,
    stop: CancellationToken,
    task: JoinHandle<S>,
}

/// Runs `source` in a task; an error of the source fails the test.
pub(crate) fn run<S: LiveSource + 'static>(mut source: S) -> Running<S> {
    let (sender, events) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            while !stop.is_cancelled() {
                for event in source.next_events(&stop).await.unwrap() {
                    let _ = sender.send(event);
                }
            }
            source
        }
    });
    Running { events, stop, task }
}

impl<S> Running<S> {
    /// The next `n` events, failing after 10 s; `describe` names them in the failure.
    pub(crate) async fn take(
        &mut self,
        n: usize,
        describe: fn(&SourceItem) -> String,
    ) -> Vec<SourceItem> {
        let mut taken = Vec::new();
        while taken.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), self.events.recv()).await {
                Ok(Some(event)) => taken.push(event),
                _ => panic!(
                    "{} of {n} events came: {:?}",
                    taken.len(),
                    taken.iter().map(describe).collect::<Vec<_>>()
                ),
            }
        }
        taken
    }

    /// Fails if an event arrives within 300 ms.
    pub(crate) async fn nothing_more(&mut self, describe: fn(&SourceItem) -> String) {
        let more = tokio::time::timeout(Duration::from_millis(300), self.events.recv()).await;
        if let Ok(Some(event)) = more {
            panic!("unexpected {}", describe(&event));
        }
    }

    /// Stops the source and hands it back.
    pub(crate) async fn finish(self) -> S {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}
