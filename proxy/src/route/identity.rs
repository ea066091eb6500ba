//! Whose request it is: the headers that go upstream, the credential
//! identity an answer is filed under, the bot's name and its priority
//! class. Each is read from exactly what upstream will receive.

use syncoord_core::config::{ClassId, Config, Keying};
use syncoord_core::{Credential, Route};

use super::headers::{forwarded_headers, forwarded_where};
use super::validate::{check_connection, check_credential_unambiguous, sanitize_client};
use super::{Proxy, UpstreamId};
use crate::rejection::{Rejection, RejectionKind};
use crate::signing::{self, Client, Signer};
use crate::{CLIENT_HEADER, PRIORITY_HEADER};
use syncoord_core::ClientShare;
use syncoord_wire::{AbovePriority, AboveShare};

/// The headers that go upstream, and whose request it is.
type Identified = (Vec<(String, String)>, Option<Credential>);

impl Proxy {
    /// Who a request is, for what it may read back of its own (the order
    /// record): the client its token names (refused when the token is no
    /// client's), and the credential identity each upstream reads from
    /// the headers it would forward (what an order sent with the same
    /// headers was filed under).
    pub fn presented_owner(
        &self,
        headers: &[(String, String)],
    ) -> Result<(Option<std::sync::Arc<str>>, Vec<Credential>), Rejection> {
        let client = self.authenticate(headers)?.map(|c| c.name.clone());
        let mut identities: Vec<Credential> = Vec::new();
        for up in &self.config().upstreams {
            let forwarded = forwarded_headers(headers, up.underscores_in_headers);
            if let Some(id) =
                syncoord_wire::credential_identity(&forwarded, &up.coordination.credential)
            {
                if !identities.contains(&id) {
                    identities.push(id);
                }
            }
        }
        Ok((client, identities))
    }

    /// The headers that go upstream and the credential identity of the
    /// request. `rule` looks the route up, only when its answer decides.
    pub(super) fn identify<'a>(
        &'a self,
        upstream: UpstreamId,
        signer: Option<&Signer>,
        headers: &[(String, String)],
        rule: &dyn Fn() -> &'a Route,
    ) -> Result<Identified, Rejection> {
        let up = self.upstream(upstream);
        let rules = &up.coordination.credential;
        let underscores = up.underscores_in_headers;
        if let Some(signer) = signer {
            // Signing mode: the bot's own signature headers are dropped
            // (syncoord signs at dispatch) and the identity is the
            // credential the token proved.
            let forwarded = forwarded_where(headers, underscores, |n| {
                !(signing::SIGNATURE_HEADERS
                    .iter()
                    .any(|s| n.eq_ignore_ascii_case(s))
                    || n.eq_ignore_ascii_case(&rules.header)
                    || rules.others.iter().any(|o| n.eq_ignore_ascii_case(o)))
            });
            let identity = Credential::new(&format!("signed:{}", signer.name()));
            return Ok((forwarded, Some(identity)));
        }
        check_connection(headers, rules)?;
        // Identity is computed from exactly what upstream will receive: a
        // header a hop strips (or that is not forwarded at all) cannot
        // name the account upstream answers for.
        let forwarded = forwarded_headers(headers, underscores);
        check_credential_unambiguous(&forwarded, rules)?;
        let presented = crate::http::presented(&forwarded, rules);
        if let Some((read, other)) = &presented.mixed {
            let rule = rule();
            let compiled = self.coordination(upstream);
            let per_credential = rule
                .scopes
                .iter()
                .any(|s| compiled.keying(*s) == Some(Keying::Credential));
            if rule.private || per_credential || rule.credential_required {
                return Err(Rejection::new(
                    RejectionKind::AmbiguousCredential,
                    format!(
                        "the request carries two credentials, `{read}` and `{other}`; upstream `{}` authenticates `{}`, and an answer must be filed under the account upstream answered for: send one",
                        up.name, rules.header
                    ),
                ));
            }
        }
        let credential = presented
            .key_name
            .as_deref()
            .map(|name| crate::http::identity_of(name, rules));
        Ok((forwarded, credential))
    }

    /// A request without a credential where its route answers only
    /// authenticated ones is refused here, before it spends any budget.
    pub(super) fn check_credential_present<'a>(
        &'a self,
        upstream: UpstreamId,
        credential: Option<&Credential>,
        what: (&str, &str),
        rule: &dyn Fn() -> &'a Route,
    ) -> Result<(), Rejection> {
        if credential.is_some() || !self.may_require_credential[upstream.index()] {
            return Ok(());
        }
        let rule = rule();
        if !rule.credential_required {
            return Ok(());
        }
        let up = self.upstream(upstream);
        let (method, path) = what;
        Err(Rejection::new(
            RejectionKind::CredentialRequired,
            format!(
                "{method} {path}: upstream `{}` answers only authenticated requests here (route `{}`), and this one carries no `{}`",
                up.name, rule.name, up.coordination.credential.header
            ),
        ))
    }
}

impl Proxy {
    /// The `[[clients]]` entry known by the API key a bot signing for
    /// itself presents (`forwarded`: what upstream receives, so the key
    /// is the one upstream authenticates), if any lists it.
    pub(super) fn client_by_api_key(
        &self,
        upstream: UpstreamId,
        forwarded: &[(String, String)],
    ) -> Option<&Client> {
        let clients = &self.signing.clients;
        if clients.0.iter().all(|c| c.api_keys.is_empty()) {
            return None;
        }
        let rules = &self.upstream(upstream).coordination.credential;
        let name = crate::http::presented(forwarded, rules).key_name?;
        let bare = name
            .strip_prefix("key:")
            .or_else(|| name.strip_prefix("jwt:"))?;
        clients.by_api_key(bare)
    }
}

/// The share of each bucket `client`'s calls may spend, as the core takes
/// it: held by the client's configured name (not the `X-Syncoord-Client`
/// a bot may set), so every name it gives spends one allowance.
pub(super) fn client_share(client: &Client) -> Option<ClientShare> {
    let (fraction, above) = client.share?;
    Some(ClientShare {
        holder: client.name.clone(),
        fraction,
        refuse: above == AboveShare::Refuse,
    })
}

/// The bot's name for fairness and stats: `X-Syncoord-Client`, else the
/// token's client, else the credential identity, else `anonymous`.
pub(super) fn client_name(
    headers: &[(String, String)],
    token_client: Option<&Client>,
    credential: Option<&Credential>,
) -> String {
    syncoord_core::header(headers, CLIENT_HEADER)
        .map(sanitize_client)
        .filter(|c| !c.is_empty())
        .or_else(|| token_client.map(|c| c.name.to_string()))
        .or_else(|| credential.map(|c| c.as_str().chars().take(128).collect()))
        .unwrap_or_else(|| "anonymous".to_owned())
}

/// The priority class `X-Syncoord-Priority` asks for, if any; a class the
/// upstream does not have is refused.
pub(super) fn priority(
    config: &Config,
    headers: &[(String, String)],
) -> Result<Option<ClassId>, Rejection> {
    match syncoord_core::header(headers, PRIORITY_HEADER) {
        None | Some("") => Ok(None),
        Some(name) => config.class_id(name).map(Some).ok_or_else(|| {
            Rejection::new(
                RejectionKind::UnknownPriority,
                format!(
                    "{PRIORITY_HEADER}: unknown class `{}` (known: {})",
                    sanitize_client(name),
                    config.priorities.join(", ")
                ),
            )
        }),
    }
}

/// The class a request runs at under its client's `max_priority`: the
/// class it asked for, or its route's (`route_class`, looked up only for
/// a client with a ceiling), lowered to the ceiling, or refused above it
/// when the client's entry says so. A ceiling the upstream has no class
/// for cannot happen: the configuration check refuses it.
pub(super) fn within_ceiling(
    config: &Config,
    client: Option<&Client>,
    asked: Option<ClassId>,
    route_class: impl FnOnce() -> ClassId,
) -> Result<Option<ClassId>, Rejection> {
    let Some((name, above)) = client.and_then(|c| c.max_priority.as_ref()) else {
        return Ok(asked);
    };
    let Some(ceiling) = config.class_id(name) else {
        return Ok(asked);
    };
    let wanted = asked.unwrap_or_else(route_class);
    if wanted >= ceiling {
        return Ok(asked);
    }
    match above {
        AbovePriority::Lower => Ok(Some(ceiling)),
        AbovePriority::Refuse => Err(Rejection::new(
            RejectionKind::PriorityNotAllowed,
            format!(
                "client `{}` may ask for `{name}` at most; this request is `{}`",
                client.map_or("", |c| c.name()),
                config.class_name(wanted)
            ),
        )),
    }
}
