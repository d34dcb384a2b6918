//! The cluster servers an agent may talk to (`--cluster URL[,URL…]`), and
//! which one it talks to now. The session, the watch and the control
//! socket share the choice: when the server in use cannot be reached, the
//! first of them to find out moves everyone to the next one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone)]
pub struct Servers {
    urls: Arc<[String]>,
    current: Arc<AtomicUsize>,
    /// TLS for every server (`https://` URLs), when configured.
    pub tls: crate::channel::Tls,
}

impl Servers {
    /// From a comma-separated list; empty entries are ignored.
    pub fn parse(list: &str) -> Servers {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        Servers {
            urls: urls.into(),
            current: Arc::new(AtomicUsize::new(0)),
            tls: None,
        }
    }

    /// The same servers, reached over TLS with `cfg`.
    pub fn with_tls(mut self, cfg: crate::channel::Tls) -> Servers {
        self.tls = cfg;
        self
    }

    /// A connected channel to the server `url`.
    pub async fn connect(&self, url: &str) -> Option<crate::channel::Client> {
        match crate::channel::connect(url, &self.tls).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(error = %e, "cluster not reachable yet");
                None
            }
        }
    }

    /// The server in use: its place in the list and its URL.
    pub fn current(&self) -> (usize, &str) {
        let i = self.current.load(Ordering::Acquire) % self.urls.len().max(1);
        (i, self.urls.get(i).map_or("", String::as_str))
    }

    /// The server at `i` did not answer: move to the next one, unless
    /// another user already moved on.
    pub fn failed(&self, i: usize) {
        let n = self.urls.len().max(1);
        let _ = self
            .current
            .compare_exchange(i, (i + 1) % n, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }
}

impl std::fmt::Display for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.urls.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_moves_everyone_once() {
        let s = Servers::parse("http://a:8088, http://b:8088,");
        assert_eq!(s.len(), 2);
        let other = s.clone();
        assert_eq!(s.current(), (0, "http://a:8088"));
        // Both the session and the watch saw server 0 fail: one move.
        s.failed(0);
        other.failed(0);
        assert_eq!(other.current(), (1, "http://b:8088"));
        s.failed(1);
        assert_eq!(s.current(), (0, "http://a:8088"), "round and round");
    }
}
