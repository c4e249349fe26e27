//! Route matching inside one control plane, with Kong's traditional router semantics. A
//! [`Router`] is compiled once per snapshot: regexes built, each (route, path) pair ranked by
//! priority and filed in `index` buckets; matching a request scans only the buckets its host
//! and path can hit, and allocates nothing.
//!
//! What follows Kong (3.x, `traditional` routes as its documentation describes them):
//! - `hosts`: exact or wildcard (`*.example.com`, `example.*`), case-insensitive, optionally with
//!   `:port`; a pattern without a port matches any port, one with a port matches the request's
//!   explicit port or the scheme's default.
//! - `paths`: plain prefixes (`/api` also matches `/apis`, as in Kong), normalized like request
//!   paths, or `~` regexes anchored at the start of the path, whose capture groups (numbered and
//!   named) [`RouteMatch::captures`] hands to whoever asks. Both match the normalized request path
//!   (see [`paths`]).
//! - `methods`: exact. `headers`: names case-insensitive; a request matches a header when one of
//!   its values equals one of the route's values, compared case-insensitively, or, for a route
//!   value written `~*regex`, contains a match of that regex, case-insensitively.
//! - `snis`: the TLS server name the client sent must be one of them (a trailing dot ignored;
//!   `*.example.com` and `example.*` match as hosts do). As in Kong, the condition is only checked
//!   on TLS requests: over plain HTTP an `https`-only route with `snis` still matches, to answer
//!   with its redirect.
//! - Priority, as Kong documents it, decided at compile time for each path of a route:
//!   1. more match categories set (`hosts`, `headers`, `paths`, `methods`, `snis`);
//!   2. plain hosts only, then no hosts, then any wildcard host;
//!   3. more headers;
//!   4. a regex path before a plain one, regex paths by higher `regex_priority` (which orders
//!      nothing else);
//!   5. longer plain path;
//!   6. older `created_at` (then id, so the order is total).
//! - A route whose `protocols` lack the request's scheme is skipped; when nothing else matches,
//!   the first such route answers with its `https_redirect_status_code` (426 or a redirect), as
//!   Kong does for an `https`-only route reached over plain HTTP. `grpc` and `ws` count as
//!   `http`, `grpcs` and `wss` as `https`.
//!
//! Where this differs from Kong, or leaves things out:
//! - Each path of a route is ranked on its own (what Kong 3 documents for its
//!   `traditional_compatible` flavour); Kong's `traditional` code ranks a whole route by its
//!   longest path, so its `["/", "/long"]` ranks `/` as long.
//! - Kong's `traditional` code also ranks by which categories are set (hosts, headers, paths,
//!   methods) and puts wildcard hosts with a port first; its documentation says neither, and we
//!   follow the documentation.
//! - Regexes use Rust's `regex` syntax, not PCRE (no look-around, no back-references); regex
//!   paths are not percent-normalized. Kong matches route `snis` exactly; wildcards are ours.
//! - Not here: `sources`/`destinations`, Kong's LRU match cache, and the
//!   `traditional_compatible`/`expressions` flavours.

pub mod authority;
mod index;
pub mod paths;

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method};
use regex::{Captures, Regex, RegexBuilder};
use tollgate_model::hostname::{host_matches, split_host_port};
use tollgate_model::service::is_tls_protocol;
use tollgate_model::{Route, Service};
use uuid::Uuid;

use crate::metrics::RouteSeries;
use index::{HostKey, Known, RouteIndex};
pub use paths::{normalize_path, upstream_path, PathHandling};

/// The scheme a request arrived with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// What the router looks at, borrowed from the request.
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// Lowercase, without the port.
    pub host: &'a str,
    /// The port in the Host header, or the scheme's default.
    pub port: u16,
    /// The normalized path (see [`normalize_path`]).
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub scheme: Scheme,
    /// The server name the client sent in its TLS handshake, lowercase; `None` over plain HTTP or
    /// when the client sent none.
    pub sni: Option<&'a str>,
}

/// A route as the proxy needs it after matching. Laid out in this order (`repr(C)`) so that what
/// every proxied request reads — the service, upstream, id, path flags and the first series slots
/// — shares the first cache lines; with thousands of routes each line is a likely miss.
#[derive(Debug)]
#[repr(C)]
pub struct CompiledRoute {
    /// `None` when the route has no service or its service is not in the snapshot.
    pub service: Option<Arc<Service>>,
    /// Where the service is reached, worked out once per service; `None` without a service, or
    /// when its host and port make no URI authority.
    pub upstream: Option<Arc<UpstreamAddress>>,
    pub id: Uuid,
    pub https_redirect_status_code: u16,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    accepts_http: bool,
    accepts_https: bool,
    /// Where the edge counts this route's requests.
    pub series: RouteSeries,
    pub name: Option<String>,
    hosts: Vec<HostPattern>,
    methods: Vec<Method>,
    headers: Vec<HeaderRule>,
    /// Lowercase, without a trailing dot; exact or wildcard.
    snis: Vec<String>,
}

/// A service's scheme and authority for the upstream URI, and the `Host` it is sent (`None` when
/// that is no valid header value).
#[derive(Debug)]
pub struct UpstreamAddress {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    pub host_header: Option<http::HeaderValue>,
}

impl UpstreamAddress {
    fn of(service: &Service) -> Option<UpstreamAddress> {
        let scheme = if is_tls_protocol(&service.protocol) {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let authority = format!("{}:{}", service.host, service.port).parse().ok()?;
        Some(UpstreamAddress {
            scheme,
            authority,
            host_header: http::HeaderValue::from_str(&service.host_header()).ok(),
        })
    }
}

#[derive(Debug)]
struct HostPattern {
    /// Lowercase, without the port; may start with `*.` or end with `.*`.
    name: String,
    wildcard: bool,
    port: Option<u16>,
}

#[derive(Debug)]
struct HeaderRule {
    name: HeaderName,
    values: Vec<HeaderValueRule>,
}

#[derive(Debug)]
enum HeaderValueRule {
    /// Compared case-insensitively.
    Exact(String),
    /// From a `~*` value: case-insensitive, found anywhere in the request's value.
    Regex(Regex),
}

#[derive(Debug)]
enum PathPattern {
    Prefix(String),
    Regex(Regex),
}

/// One (route, path) pair; the router keeps them in priority order.
#[derive(Debug)]
struct Entry {
    route: Arc<CompiledRoute>,
    path: Option<PathPattern>,
    /// Whether the route has hosts, methods, snis or headers to check.
    conditions: bool,
    /// The route's, copied here so that ruling out a route over plain HTTP reads only this.
    accepts_http: bool,
    accepts_https: bool,
}

impl Entry {
    fn new(route: Arc<CompiledRoute>, path: Option<PathPattern>) -> Entry {
        let conditions = !(route.hosts.is_empty()
            && route.methods.is_empty()
            && route.snis.is_empty()
            && route.headers.is_empty());
        Entry {
            accepts_http: route.accepts_http,
            accepts_https: route.accepts_https,
            route,
            path,
            conditions,
        }
    }

    fn accepts(&self, scheme: Scheme) -> bool {
        match scheme {
            Scheme::Http => self.accepts_http,
            Scheme::Https => self.accepts_https,
        }
    }
}

/// The outcome of matching one request.
pub enum Routed<'r, 'p> {
    Matched(RouteMatch<'r, 'p>),
    /// Only routes that do not accept this scheme matched; the first of them.
    WrongScheme(&'r Arc<CompiledRoute>),
    NoMatch,
}

pub struct RouteMatch<'r, 'p> {
    pub route: &'r Arc<CompiledRoute>,
    /// The part of the path the route's path matched (the prefix, or the regex's match).
    pub matched: Option<&'p str>,
    /// The rest of the path after `matched`.
    pub postfix: Option<&'p str>,
    /// The regex path that matched, kept so that captures cost nothing until asked for.
    regex: Option<&'r Regex>,
    path: &'p str,
}

impl<'r, 'p> RouteMatch<'r, 'p> {
    /// The capture groups of the `~` regex path that matched — numbered and named, Kong's
    /// `router_matches.uri_captures` — or `None` when no regex path matched. For plugins and
    /// `hash_on = uri_capture`: it runs the regex again, so requests pay for captures only when
    /// something asks for them.
    pub fn captures(&self) -> Option<Captures<'p>> {
        self.regex?.captures(self.path)
    }

    /// The `~` regex path that matched, to look up captures after the match itself is gone.
    pub fn regex(&self) -> Option<&'r Regex> {
        self.regex
    }

    /// One named capture group of the regex path that matched.
    pub fn capture(&self, name: &str) -> Option<&'p str> {
        Some(self.captures()?.name(name)?.as_str())
    }
}

/// The routes of one control plane, in the order they are tried, and the index that finds the
/// candidates for a request.
#[derive(Debug, Default)]
pub struct Router {
    entries: Vec<Entry>,
    index: RouteIndex,
}

/// The best entries seen while scanning: the first full match, and the first that matched all but
/// the scheme (`usize::MAX` for none).
struct Best {
    matched: usize,
    matched_len: Option<usize>,
    wrong_scheme: usize,
}

impl Best {
    const NONE: Best = Best {
        matched: usize::MAX,
        matched_len: None,
        wrong_scheme: usize::MAX,
    };
}

/// The compiled regexes of a previous router, by source, for the next one to take instead of
/// compiling them again: a regex costs tens of microseconds or more to compile, and most of a new
/// snapshot's regexes are the ones of the snapshot it replaces. A clone shares the compiled
/// program.
#[derive(Default)]
struct CompiledRegexes<'a> {
    /// By the anchored source [`compile_path`] builds.
    paths: HashMap<&'a str, &'a Regex>,
    /// By the source after `~*` (all are case-insensitive).
    headers: HashMap<&'a str, &'a Regex>,
}

impl<'a> CompiledRegexes<'a> {
    fn of(router: &'a Router) -> CompiledRegexes<'a> {
        let mut regexes = CompiledRegexes::default();
        for entry in &router.entries {
            if let Some(PathPattern::Regex(regex)) = &entry.path {
                regexes.paths.insert(regex.as_str(), regex);
            }
            for rule in &entry.route.headers {
                for value in &rule.values {
                    if let HeaderValueRule::Regex(regex) = value {
                        regexes.headers.insert(regex.as_str(), regex);
                    }
                }
            }
        }
        regexes
    }
}

impl Router {
    /// Builds the router of a snapshot: resolves each route's service, compiles regexes, sorts
    /// routes by Kong's priority rules and indexes them.
    pub fn compile(services: &[Service], routes: &[Route]) -> Router {
        Router::compile_after(services, routes, None)
    }

    /// Like [`Router::compile`], taking the regexes `previous` (the router this one replaces)
    /// already compiled instead of compiling them again.
    pub fn compile_after(
        services: &[Service],
        routes: &[Route],
        previous: Option<&Router>,
    ) -> Router {
        let regexes = previous.map(CompiledRegexes::of).unwrap_or_default();
        // Worked out once per service and shared by its routes: a request then reads the same
        // memory whatever route it took.
        let services: HashMap<Uuid, ServiceTarget> = services
            .iter()
            .map(|s| {
                let upstream = UpstreamAddress::of(s).map(Arc::new);
                (s.id, (Arc::new(s.clone()), upstream))
            })
            .collect();
        let mut ranked = Vec::new();
        for route in routes {
            let compiled = match compile_route(route, &services, &regexes) {
                Ok(compiled) => Arc::new(compiled),
                Err(message) => {
                    tracing::warn!(route = %route.id, %message, "skipping route");
                    continue;
                }
            };
            let rank = RouteRank::of(route);
            let paths = route.paths.as_deref().unwrap_or_default();
            if paths.is_empty() {
                ranked.push((rank.key(route, None), Entry::new(compiled, None)));
                continue;
            }
            for raw in paths {
                let Some(path) = compile_path(route.id, raw, &regexes) else {
                    continue;
                };
                let key = rank.key(route, Some(&path));
                ranked.push((key, Entry::new(compiled.clone(), Some(path))));
            }
        }
        ranked.sort_by(|(a, _), (b, _)| a.cmp(b));
        // A Vec of its own size: collected in place, the entries would keep `ranked`'s
        // allocation, sort keys and all (3.9 MB at 10,000 routes), for as long as the router lives.
        let mut entries: Vec<Entry> = Vec::with_capacity(ranked.len());
        entries.extend(ranked.into_iter().map(|(_, entry)| entry));

        let mut index = RouteIndex::default();
        let mut hosts = Vec::new();
        for (number, entry) in (0u32..).zip(&entries) {
            hosts.clear();
            hosts.extend(entry.route.hosts.iter().map(|h| HostKey::of(&h.name)));
            let prefix = match &entry.path {
                Some(PathPattern::Prefix(prefix)) => Some(prefix.as_str()),
                _ => None,
            };
            index.add(number, &hosts, prefix);
        }
        index.finish();
        Router { entries, index }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every route, once for each of its paths.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<CompiledRoute>> {
        self.entries.iter().map(|entry| &entry.route)
    }

    /// Finds the route for a request: the first entry in priority order that matches it, looking
    /// only at the index buckets the request's host and path lead to.
    pub fn find<'r, 'p>(&'r self, request: &RequestFacts<'p>) -> Routed<'r, 'p> {
        let mut best = Best::NONE;
        self.index
            .candidates(request.host, request.path, |bucket: &[u32], known| {
                self.scan(
                    bucket.iter().map(|&n| n as usize),
                    known,
                    request,
                    &mut best,
                );
                u32::try_from(best.matched).unwrap_or(u32::MAX)
            });
        self.outcome(&best, request)
    }

    /// Finds the route by trying every entry in priority order: the reference [`Router::find`]
    /// must agree with, for tests and the fuzz target.
    pub fn find_linear<'r, 'p>(&'r self, request: &RequestFacts<'p>) -> Routed<'r, 'p> {
        let mut best = Best::NONE;
        self.scan(0..self.entries.len(), Known::Nothing, request, &mut best);
        self.outcome(&best, request)
    }

    /// Tries entries given in ascending order, stopping at the first full match or once they
    /// cannot beat the best one found so far. `known` is what the entries are known to match.
    fn scan(
        &self,
        numbers: impl Iterator<Item = usize>,
        known: Known,
        request: &RequestFacts<'_>,
        best: &mut Best,
    ) {
        for number in numbers {
            if number >= best.matched {
                return;
            }
            let entry = &self.entries[number];
            let Some(matched_len) = entry.matches(request, known) else {
                continue;
            };
            if entry.accepts(request.scheme) {
                best.matched = number;
                best.matched_len = matched_len;
                return;
            }
            best.wrong_scheme = best.wrong_scheme.min(number);
        }
    }

    fn outcome<'r, 'p>(&'r self, best: &Best, request: &RequestFacts<'p>) -> Routed<'r, 'p> {
        if let Some(entry) = self.entries.get(best.matched) {
            let path = request.path;
            return Routed::Matched(RouteMatch {
                route: &entry.route,
                matched: best.matched_len.map(|len| &path[..len]),
                postfix: best.matched_len.map(|len| &path[len..]),
                regex: match &entry.path {
                    Some(PathPattern::Regex(regex)) => Some(regex),
                    _ => None,
                },
                path,
            });
        }
        match self.entries.get(best.wrong_scheme) {
            Some(entry) => Routed::WrongScheme(&entry.route),
            None => Routed::NoMatch,
        }
    }
}

impl Entry {
    /// `None` when the entry does not match (scheme aside); otherwise how many bytes of the path
    /// its path matched, if it has one. `known` is what the index already established. A route
    /// with no hosts, methods, snis or headers matched by a known prefix is not looked at: with
    /// thousands of routes, reading it would be a cache miss per candidate.
    fn matches(&self, request: &RequestFacts<'_>, known: Known) -> Option<Option<usize>> {
        let matched_len = match (&self.path, known) {
            (_, Known::Prefix(len)) => Some(len),
            (None, Known::Nothing) => None,
            (Some(pattern), Known::Nothing) => Some(pattern.match_len(request.path)?),
        };
        if !self.conditions {
            return Some(matched_len);
        }
        let route = &self.route;
        (route.matches_host(request)
            && route.matches_method(request.method)
            && route.matches_sni(request)
            && route.matches_headers(request.headers))
        .then_some(matched_len)
    }
}

impl CompiledRoute {
    fn matches_host(&self, request: &RequestFacts<'_>) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        self.hosts.iter().any(|pattern| {
            pattern.port.is_none_or(|p| p == request.port)
                && if pattern.wildcard {
                    host_matches(&pattern.name, request.host)
                } else {
                    pattern.name == request.host
                }
        })
    }

    fn matches_method(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    fn matches_sni(&self, request: &RequestFacts<'_>) -> bool {
        if self.snis.is_empty() || request.scheme == Scheme::Http {
            return true;
        }
        request
            .sni
            .is_some_and(|sni| self.snis.iter().any(|pattern| host_matches(pattern, sni)))
    }

    fn matches_headers(&self, headers: &HeaderMap) -> bool {
        self.headers.iter().all(|rule| {
            headers.get_all(&rule.name).iter().any(|value| {
                value.to_str().is_ok_and(|value| {
                    rule.values.iter().any(|wanted| match wanted {
                        HeaderValueRule::Exact(wanted) => wanted.eq_ignore_ascii_case(value),
                        HeaderValueRule::Regex(regex) => regex.is_match(value),
                    })
                })
            })
        })
    }
}

impl PathPattern {
    /// How many bytes at the start of `path` this pattern matches.
    fn match_len(&self, path: &str) -> Option<usize> {
        match self {
            PathPattern::Prefix(prefix) => {
                path.starts_with(prefix.as_str()).then_some(prefix.len())
            }
            PathPattern::Regex(regex) => regex.find(path).map(|m| m.end()),
        }
    }
}

/// Fails on a host, method or header name that cannot be matched as written; the control plane
/// validates routes, so only a bug gets there, and dropping the rule instead would make the route
/// match more than it says.
/// A service, and where it is reached.
type ServiceTarget = (Arc<Service>, Option<Arc<UpstreamAddress>>);

fn compile_route(
    route: &Route,
    services: &HashMap<Uuid, ServiceTarget>,
    regexes: &CompiledRegexes<'_>,
) -> Result<CompiledRoute, String> {
    let hosts = route
        .hosts
        .iter()
        .flatten()
        .map(|raw| {
            let lower = raw.to_ascii_lowercase();
            let (name, port) = split_host_port(&lower)?;
            Ok(HostPattern {
                wildcard: name.contains('*'),
                name: name.to_string(),
                port,
            })
        })
        .collect::<Result<_, String>>()?;
    let methods = route
        .methods
        .iter()
        .flatten()
        .map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| format!("invalid method {m:?}")))
        .collect::<Result<_, String>>()?;
    let headers = route
        .headers
        .iter()
        .flatten()
        .map(|(name, values)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))?;
            let values = values
                .iter()
                .filter_map(|value| compile_header_value(route.id, &name, value, regexes))
                .collect();
            Ok(HeaderRule { name, values })
        })
        .collect::<Result<_, String>>()?;
    let snis = route
        .snis
        .iter()
        .flatten()
        .map(|sni| {
            let sni = sni.to_ascii_lowercase();
            // As in Kong: the last dot of a fully qualified name plays no part in routing.
            match sni.strip_suffix('.') {
                Some(stripped) if !stripped.is_empty() => stripped.to_string(),
                _ => sni,
            }
        })
        .collect();
    let (service, upstream) = route
        .service
        .and_then(|fk| services.get(&fk.id).cloned())
        .unzip();
    Ok(CompiledRoute {
        id: route.id,
        name: route.name.clone(),
        upstream: upstream.flatten(),
        service,
        strip_path: route.strip_path,
        preserve_host: route.preserve_host,
        path_handling: PathHandling::parse(&route.path_handling),
        https_redirect_status_code: u16::try_from(route.https_redirect_status_code).unwrap_or(426),
        series: RouteSeries::default(),
        hosts,
        methods,
        headers,
        snis,
        accepts_http: route.protocols.iter().any(|p| !is_tls_protocol(p)),
        accepts_https: route.protocols.iter().any(|p| is_tls_protocol(p)),
    })
}

/// A value that fails to compile is dropped: a header left with no values matches nothing.
fn compile_header_value(
    route: Uuid,
    name: &HeaderName,
    value: &str,
    regexes: &CompiledRegexes<'_>,
) -> Option<HeaderValueRule> {
    let Some(pattern) = value.strip_prefix("~*") else {
        return Some(HeaderValueRule::Exact(value.to_string()));
    };
    if let Some(&regex) = regexes.headers.get(pattern) {
        return Some(HeaderValueRule::Regex(regex.clone()));
    }
    match RegexBuilder::new(pattern).case_insensitive(true).build() {
        Ok(regex) => Some(HeaderValueRule::Regex(regex)),
        Err(e) => {
            tracing::warn!(%route, header = %name, %value, error = %e, "skipping invalid header regex");
            None
        }
    }
}

fn compile_path(route: Uuid, raw: &str, regexes: &CompiledRegexes<'_>) -> Option<PathPattern> {
    match raw.strip_prefix('~') {
        // Kong anchors regex paths at the start of the path (PCRE's `a` flag).
        Some(pattern) => {
            let anchored = format!("^(?:{pattern})");
            if let Some(&regex) = regexes.paths.get(anchored.as_str()) {
                return Some(PathPattern::Regex(regex.clone()));
            }
            compile_path_regex(route, raw, &anchored)
        }
        // Requests are matched in normalized form, so a prefix must be too to ever match.
        None => Some(PathPattern::Prefix(normalize_path(raw).into_owned())),
    }
}

fn compile_path_regex(route: Uuid, raw: &str, anchored: &str) -> Option<PathPattern> {
    match Regex::new(anchored) {
        Ok(regex) => Some(PathPattern::Regex(regex)),
        Err(e) => {
            tracing::warn!(%route, path = %raw, error = %e, "skipping invalid regex path");
            None
        }
    }
}

/// Which hosts a route has, in the order Kong tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HostKind {
    PlainOnly,
    None,
    Wildcard,
}

/// The parts of a route that rank it, shared by its per-path entries.
struct RouteRank {
    categories: u32,
    hosts: HostKind,
    header_count: usize,
}

impl RouteRank {
    fn of(route: &Route) -> RouteRank {
        let set = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
        let header_count = route.headers.as_ref().map_or(0, |h| h.len());
        let hosts = route.hosts.as_deref().unwrap_or_default();
        let hosts = if hosts.is_empty() {
            HostKind::None
        } else if hosts.iter().any(|h| h.contains('*')) {
            HostKind::Wildcard
        } else {
            HostKind::PlainOnly
        };
        let categories = [
            hosts != HostKind::None,
            header_count > 0,
            set(&route.methods),
            set(&route.snis),
        ]
        .into_iter()
        .filter(|&set| set)
        .count();
        RouteRank {
            categories: u32::try_from(categories).unwrap_or(u32::MAX),
            hosts,
            header_count,
        }
    }

    /// The key of one entry of the route; `path` is `None` for a route without paths.
    fn key(&self, route: &Route, path: Option<&PathPattern>) -> PriorityKey {
        PriorityKey {
            categories: Reverse(self.categories + u32::from(path.is_some())),
            hosts: self.hosts,
            header_count: Reverse(self.header_count),
            regex_priority: Reverse(match path {
                Some(PathPattern::Regex(_)) => Some(route.regex_priority),
                _ => None,
            }),
            prefix_len: Reverse(match path {
                Some(PathPattern::Prefix(prefix)) => prefix.len(),
                _ => 0,
            }),
            created_at: route.created_at,
            id: route.id,
        }
    }
}

/// Sorts ascending into the order entries are tried; fields compare in declaration order.
/// `regex_priority` is `Some` only for a regex path, and `Reverse(Some(_))` sorts before
/// `Reverse(None)`: regex paths come first, higher `regex_priority` first among them.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct PriorityKey {
    categories: Reverse<u32>,
    hosts: HostKind,
    header_count: Reverse<usize>,
    regex_priority: Reverse<Option<i64>>,
    prefix_len: Reverse<usize>,
    created_at: i64,
    id: Uuid,
}

#[cfg(test)]
mod tests;
