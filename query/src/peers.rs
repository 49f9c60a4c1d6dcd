//! The other processes of a cluster a query node talks to: collectors
//! (`--collectors`) and query workers (`--query-workers`).
//!
//! Each is given as a list of URLs. A URL whose host name resolves to
//! several addresses stands for all of them, as a Kubernetes headless
//! service does for its pods; names are resolved again every few seconds,
//! so peers that come and go are picked up without a restart.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use url::Url;

/// How often names are resolved again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// `http://host:port`: a peer or, for a name with many addresses, a set of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUrl(Url);

impl FromStr for PeerUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
        let url = Url::parse(&with_scheme).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if url.scheme() != "http" || url.host_str().is_none() || url.port().is_none() {
            return Err(format!("{text:?} is not http://host:port"));
        }
        Ok(Self(url))
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The peers of one kind, as last resolved; cheap to read.
#[derive(Debug, Default)]
pub struct Peers {
    given: Vec<PeerUrl>,
    resolved: RwLock<Vec<Url>>,
}

impl Peers {
    /// Resolves `given` once, then keeps resolving it every
    /// [`RESOLVE_INTERVAL`] until `stop`.
    pub async fn resolve(what: &'static str, given: Vec<PeerUrl>, stop: CancellationToken) -> Arc<Self> {
        let peers = Arc::new(Self { given, resolved: RwLock::default() });
        peers.refresh(what).await;
        let watched = Arc::clone(&peers);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RESOLVE_INTERVAL) => watched.refresh(what).await,
                }
            }
        });
        peers
    }

    /// Fixed URLs, never resolved: for tests and in-process use.
    pub fn fixed(urls: Vec<Url>) -> Arc<Self> {
        Arc::new(Self { given: Vec::new(), resolved: RwLock::new(urls) })
    }

    pub fn urls(&self) -> Vec<Url> {
        self.resolved.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn refresh(&self, what: &str) {
        let mut urls = BTreeSet::new();
        for peer in &self.given {
            let (host, port) = (peer.0.host_str().unwrap_or_default(), peer.0.port().unwrap_or_default());
            match tokio::net::lookup_host((host, port)).await {
                Ok(addrs) => urls.extend(addrs.filter_map(|addr| Url::parse(&format!("http://{addr}")).ok())),
                // Keep what the name resolved to last time.
                Err(error) => {
                    warn!(peer = %peer, %error, "cannot resolve {what}");
                    urls.extend(self.urls().into_iter().filter(|u| u.port() == Some(port)));
                }
            }
        }
        let urls: Vec<Url> = urls.into_iter().collect();
        let mut resolved = self.resolved.write().unwrap_or_else(|p| p.into_inner());
        if *resolved != urls {
            info!(peers = ?urls.iter().map(Url::as_str).collect::<Vec<_>>(), "{what}");
            *resolved = urls;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_need_a_host_and_a_port() {
        assert_eq!("collector-0:4320".parse::<PeerUrl>().unwrap().to_string(), "http://collector-0:4320/");
        assert!("http://collectors.spanlake.svc:4320".parse::<PeerUrl>().is_ok());
        assert!("http://collectors".parse::<PeerUrl>().is_err(), "no port");
        assert!("https://a:1".parse::<PeerUrl>().is_err());
        assert!("::".parse::<PeerUrl>().is_err());
    }

    #[tokio::test]
    async fn a_name_stands_for_every_address_it_resolves_to() {
        let given = vec!["localhost:4320".parse().unwrap(), "127.0.0.1:4321".parse().unwrap()];
        let peers = Peers::resolve("peers", given, CancellationToken::new()).await;
        let urls = peers.urls();
        assert!(urls.contains(&Url::parse("http://127.0.0.1:4320").unwrap()), "{urls:?}");
        assert!(urls.contains(&Url::parse("http://127.0.0.1:4321").unwrap()), "{urls:?}");
    }
}
