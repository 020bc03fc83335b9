//! Every kind of live source, by name: the one place that turns a `[sources.<kind>.<name>]`
//! section into a running source, for `pulse up` and `pulse ingest <kind>`.

use prometheus_client::registry::Registry;
use pulse_core::config::{SourceSection, SourcesConfig};
use pulse_core::PostLimits;
use tokio_util::sync::CancellationToken;

use super::{LiveSource, SourceError, SourceMetrics};
use crate::bluesky::{BlueskyConfig, BlueskySource};
use crate::reddit::{RedditConfig, RedditSource};
use crate::x::{XConfig, XSource};
use crate::SourceItem;

/// A live source of any kind.
pub enum AnySource {
    Reddit(Box<RedditSource>),
    X(Box<XSource>),
    Bluesky(Box<BlueskySource>),
}

/// The kinds of live source, as named in the configuration and on the command line.
pub const KINDS: [&str; 3] = ["reddit", "x", "bluesky"];

impl AnySource {
    /// Builds instance `name` of `kind` from its section, its metrics registered in
    /// `registry`.
    pub fn build(
        kind: &str,
        name: &str,
        section: &SourceSection,
        limits: PostLimits,
        registry: &mut Registry,
    ) -> Result<Self, SourceError> {
        match kind {
            "reddit" => {
                let config = RedditConfig::from_section(name, section)?;
                let metrics = SourceMetrics::register(registry, kind, name);
                Ok(Self::Reddit(Box::new(RedditSource::new(
                    name, config, limits, metrics,
                )?)))
            }
            "x" => {
                let config = XConfig::from_section(name, section)?;
                let metrics = SourceMetrics::register(registry, kind, name);
                Ok(Self::X(Box::new(XSource::new(
                    name, config, limits, metrics,
                )?)))
            }
            "bluesky" => {
                let config = BlueskyConfig::from_section(name, section)?;
                let metrics = SourceMetrics::register(registry, kind, name);
                Ok(Self::Bluesky(Box::new(BlueskySource::new(
                    name, config, limits, metrics,
                )?)))
            }
            other => Err(SourceError::Config {
                key: format!("sources.{other}"),
                reason: format!("unknown kind of source; known: {}", KINDS.join(", ")),
            }),
        }
    }

    /// Every instance configured under `[sources.*]`.
    pub fn configured(
        sources: &SourcesConfig,
        limits: &PostLimits,
        registry: &mut Registry,
    ) -> Result<Vec<Self>, SourceError> {
        let sections = sources
            .reddit
            .iter()
            .map(|(name, section)| ("reddit", name, section))
            .chain(sources.x.iter().map(|(name, section)| ("x", name, section)))
            .chain(
                sources
                    .bluesky
                    .iter()
                    .map(|(name, section)| ("bluesky", name, section)),
            );
        sections
            .map(|(kind, name, section)| Self::build(kind, name, section, limits.clone(), registry))
            .collect()
    }

    fn inner(&self) -> &dyn Described {
        match self {
            Self::Reddit(source) => source.as_ref(),
            Self::X(source) => source.as_ref(),
            Self::Bluesky(source) => source.as_ref(),
        }
    }
}

/// The synchronous part of [`LiveSource`], object-safe.
trait Described {
    fn kind(&self) -> &'static str;
    fn instance(&self) -> &str;
    fn status(&self) -> String;
}

impl<S: LiveSource> Described for S {
    fn kind(&self) -> &'static str {
        LiveSource::kind(self)
    }
    fn instance(&self) -> &str {
        LiveSource::instance(self)
    }
    fn status(&self) -> String {
        LiveSource::status(self)
    }
}

impl LiveSource for AnySource {
    fn kind(&self) -> &'static str {
        self.inner().kind()
    }

    fn instance(&self) -> &str {
        self.inner().instance()
    }

    fn restore(&mut self, checkpoint: Option<&[u8]>) -> Result<(), SourceError> {
        match self {
            Self::Reddit(source) => source.restore(checkpoint),
            Self::X(source) => source.restore(checkpoint),
            Self::Bluesky(source) => source.restore(checkpoint),
        }
    }

    fn checkpoint(&self) -> Result<Vec<u8>, SourceError> {
        match self {
            Self::Reddit(source) => source.checkpoint(),
            Self::X(source) => source.checkpoint(),
            Self::Bluesky(source) => source.checkpoint(),
        }
    }

    async fn next_events(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Vec<SourceItem>, SourceError> {
        match self {
            Self::Reddit(source) => source.next_events(stop).await,
            Self::X(source) => source.next_events(stop).await,
            Self::Bluesky(source) => source.next_events(stop).await,
        }
    }

    fn status(&self) -> String {
        self.inner().status()
    }
}
