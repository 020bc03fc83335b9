//! Forgetting posts deleted at their source: each leaves the channel's feed, and a
//! `deleted` entry takes its place at the feed's end so that live readers (SSE) drop what
//! they already show. Counts are left as they are: windows are short-lived, and the batch
//! views, rebuilt by recompute, exclude the post.

use std::sync::LazyLock;

use redis::Script;

use crate::{SpeedError, SpeedLayer};

/// Deletes the feed entries whose post has id ARGV[1], then appends a `deleted` entry
/// naming it (capped at ARGV[2]); returns how many entries were deleted.
///
/// KEYS: feed. ARGV: post id, feed cap.
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = 0
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'post' then
      local ok, post = pcall(cjson.decode, fields[i + 1])
      if ok and type(post) == 'table' and post['id'] == ARGV[1] then
        removed = removed + redis.call('XDEL', KEYS[1], entry[1])
      end
    end
  end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'deleted', ARGV[1])
return removed
",
    )
});

/// An entry of a channel's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEntry {
    /// A post's JSON.
    Post(String),
    /// The id of a post deleted at its source, gone from the feed.
    Deleted(String),
}

impl SpeedLayer {
    /// Removes the posts `(channel, id)` from their channels' feeds; returns how many feed
    /// entries were removed. Forgetting a post twice is harmless.
    pub async fn forget(&self, posts: &[(&str, &str)]) -> Result<usize, SpeedError> {
        if posts.is_empty() {
            return Ok(0);
        }
        let mut connection = self.connection.clone();
        FORGET.prepare_invoke().load_async(&mut connection).await?;
        let mut pipe = redis::pipe();
        for (channel, id) in posts {
            let mut invocation = FORGET.prepare_invoke();
            invocation
                .key(self.keys.feed(channel))
                .arg(*id)
                .arg(self.feed_length);
            pipe.invoke_script(&invocation);
        }
        let removed: Vec<usize> = pipe.query_async(&mut connection).await?;
        Ok(removed.into_iter().sum())
    }
}
