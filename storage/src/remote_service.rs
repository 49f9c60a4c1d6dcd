//! Who a span calls: the remote service name that the `remote_service_name`
//! column, Zipkin's `remoteServices` and `remoteEndpoint`, and the
//! dependency graph all use, so they agree.

use crate::schema::attr;

/// The attributes that name the peer of a call, seen while reading a span.
#[derive(Default)]
pub(crate) struct RemoteService<'a> {
    peer_service: Option<&'a str>,
    db_system: Option<&'a str>,
    messaging_system: Option<&'a str>,
    rpc_service: Option<&'a str>,
    server_address: Option<&'a str>,
    /// `net.peer.name`, the older `server.address`.
    peer_name: Option<&'a str>,
    /// The host of `url.full` or `http.url`.
    url_host: Option<&'a str>,
}

/// The host of a URL: between `scheme://` (and any `user@`) and the port
/// or path.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

impl<'a> RemoteService<'a> {
    /// Sees one attribute; only string values name a peer.
    pub(crate) fn observe(&mut self, key: &str, value: Option<&'a str>) {
        let Some(s) = value else { return };
        let (slot, value) = match key {
            attr::PEER_SERVICE => (&mut self.peer_service, Some(s)),
            attr::DB_SYSTEM => (&mut self.db_system, Some(s)),
            attr::MESSAGING_SYSTEM => (&mut self.messaging_system, Some(s)),
            "rpc.service" => (&mut self.rpc_service, Some(s)),
            attr::SERVER_ADDRESS => (&mut self.server_address, Some(s)),
            "net.peer.name" => (&mut self.peer_name, Some(s)),
            "url.full" | "http.url" => (&mut self.url_host, url_host(s)),
            _ => return,
        };
        if let Some(value) = value {
            slot.get_or_insert(value);
        }
    }

    /// `peer.service` when the instrumentation names the peer; for outgoing
    /// calls (CLIENT, PRODUCER) the database or messaging system, the RPC
    /// service, else the server address (`server.address`, or the older
    /// `net.peer.name`), else the host of the URL.
    pub(crate) fn name(&self, kind: i32) -> Option<&'a str> {
        const CLIENT: i32 = 3;
        const PRODUCER: i32 = 4;
        let outgoing = kind == CLIENT || kind == PRODUCER;
        self.peer_service.or(if outgoing {
            self.db_system
                .or(self.messaging_system)
                .or(self.rpc_service)
                .or(self.server_address)
                .or(self.peer_name)
                .or(self.url_host)
        } else {
            None
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_of_urls() {
        for (url, host) in [
            ("http://a.example/x", Some("a.example")),
            ("https://user:pw@b.example:8443", Some("b.example")),
            ("http://[2001:db8::1]:80/", Some("2001:db8::1")),
            ("no scheme", None),
            ("http:///path", None),
        ] {
            assert_eq!(super::url_host(url), host, "{url}");
        }
    }
}
