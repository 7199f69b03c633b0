//! A server's security settings: how connections are authenticated, which
//! cluster it belongs to, who may operate it and what it exposes.

use std::sync::Arc;

use super::channel::{Authenticator, Credential, Insecure};

/// How a [`NodeManager`](crate::runtime::NodeManager) authenticates and
/// authorizes connections. There is no default: a server is either given
/// credentials or explicitly made [`insecure`](Security::insecure).
#[derive(Clone)]
pub struct Security {
    /// Sets up the secure channel on every connection, both ways.
    pub authenticator: Arc<dyn Authenticator>,
    /// Every server of a cluster has the same id; a `Hello` naming another
    /// is refused (two clusters sharing a CA stay apart).
    pub cluster_id: String,
    /// Tokens that make a connection an operator's (admin verbs, status
    /// page). Empty: nobody operates this server remotely.
    pub operator_tokens: Vec<String>,
    /// Tokens that make a connection an application's (`oar::client`):
    /// sessions, commands, reads and route lookups, none of the operator's
    /// verbs. Empty: only operators may act as clients.
    pub client_tokens: Vec<String>,
    /// Serve admin requests (braft's `disable_cli` when false).
    pub admin_enabled: bool,
    /// Serve the HTTP status page.
    pub status_page_enabled: bool,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("Security")
            .field("authenticator", &self.authenticator)
            .field("cluster_id", &self.cluster_id)
            .field("operator_tokens", &self.operator_tokens.len())
            .field("client_tokens", &self.client_tokens.len())
            .field("admin_enabled", &self.admin_enabled)
            .field("status_page_enabled", &self.status_page_enabled)
            .finish()
    }
}

impl Security {
    /// Authenticated with `authenticator` in cluster `cluster_id`, admin
    /// and status page on for holders of `operator_tokens`.
    pub fn new(
        authenticator: Arc<dyn Authenticator>,
        cluster_id: impl Into<String>,
        operator_tokens: Vec<String>,
    ) -> Self {
        Security {
            authenticator,
            cluster_id: cluster_id.into(),
            operator_tokens,
            client_tokens: Vec::new(),
            admin_enabled: true,
            status_page_enabled: true,
        }
    }

    /// No authentication at all: any connection may claim to be any server
    /// (from its own IP) or an operator. For a deliberate `--insecure`
    /// deployment on a trusted network, and tests.
    pub fn insecure(cluster_id: impl Into<String>) -> Self {
        Security::new(Arc::new(Insecure), cluster_id, Vec::new())
    }

    /// These settings, with `tokens` admitting clients.
    pub fn with_client_tokens(mut self, tokens: Vec<String>) -> Self {
        self.client_tokens = tokens;
        self
    }

    /// Whether this server checks nothing.
    pub fn is_insecure(&self) -> bool {
        self.authenticator.checks_nothing()
    }

    /// Whether `token` over a channel that proved `credential` makes an
    /// operator. Compared in constant time.
    pub(crate) fn is_operator(&self, credential: &Credential, token: &[u8]) -> bool {
        Self::holds(&self.operator_tokens, credential, token)
    }

    /// Whether `token` over a channel that proved `credential` makes a
    /// client. Compared in constant time.
    pub(crate) fn is_client(&self, credential: &Credential, token: &[u8]) -> bool {
        Self::holds(&self.client_tokens, credential, token)
    }

    fn holds(tokens: &[String], credential: &Credential, token: &[u8]) -> bool {
        if let Credential::Unchecked(_) = credential {
            return true;
        }
        let mut found = false;
        for known in tokens {
            found |= constant_time_eq(known.as_bytes(), token);
        }
        found && !token.is_empty()
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn only_a_configured_token_makes_an_operator() {
        let security = Security::new(Arc::new(Insecure), "c", vec!["secret".into()]);
        let anonymous = Credential::Anonymous;
        assert!(security.is_operator(&anonymous, b"secret"));
        assert!(!security.is_operator(&anonymous, b"secreT"));
        assert!(!security.is_operator(&anonymous, b""));
        let none = Security::new(Arc::new(Insecure), "c", Vec::new());
        assert!(!none.is_operator(&anonymous, b""));
        let unchecked = Credential::Unchecked(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(none.is_operator(&unchecked, b""));
    }

    #[test]
    fn client_and_operator_tokens_are_apart() {
        let security = Security::new(Arc::new(Insecure), "c", vec!["op".into()])
            .with_client_tokens(vec!["app".into()]);
        let anonymous = Credential::Anonymous;
        assert!(security.is_client(&anonymous, b"app"));
        assert!(!security.is_client(&anonymous, b"op"));
        assert!(!security.is_operator(&anonymous, b"app"));
        assert!(!security.is_client(&anonymous, b""));
    }
}
