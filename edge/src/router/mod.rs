//! Route matching inside one control plane, with Kong's traditional router semantics. A
//! [`Router`] is compiled once per snapshot (regexes built, routes split per path and sorted by
//! priority); matching a request walks that ordered list and allocates nothing.
//!
//! What follows Kong (2.x/3.x `traditional` flavour):
//! - `hosts`: exact or wildcard (`*.example.com`, `example.*`), case-insensitive, optionally with
//!   `:port`; a pattern without a port matches any port, one with a port matches the request's
//!   explicit port or the scheme's default.
//! - `paths`: plain prefixes (`/api` also matches `/apis`, as in Kong), or `~` regexes anchored at
//!   the start of the path. Both are matched against the normalized path (see [`paths`]).
//! - `methods`: exact; `headers`: names case-insensitive, any listed value, compared
//!   case-insensitively (Kong lowercases both sides).
//! - Priority, decided here at compile time: a route with several paths counts as one entry per
//!   path; entries sort by the number of match categories (hosts, headers, paths, methods), then
//!   which categories (hosts > headers > paths > methods), then "wildcard host with a port" >
//!   "plain hosts only" > "regex path", then more headers, then `regex_priority`, then longer
//!   prefix, then older `created_at` (then id, so the order is total).
//! - A route whose `protocols` lack the request's scheme is skipped; when nothing else matches, the
//!   first such route answers with its `https_redirect_status_code` (426 or a redirect), as Kong
//!   does for an `https`-only route reached over plain HTTP.
//!
//! Approximated or not yet here: Kong's per-category indexes and LRU match cache (this is one
//! linear scan in priority order), `snis`, `sources`/`destinations`, header values given as `~*`
//! regexes, regex capture groups exposed to plugins, and the `traditional_compatible` /
//! `expressions` flavours.

pub mod authority;
pub mod paths;

use std::cmp::Ordering;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;
use tollgate_model::hostname::{host_matches, split_host_port};
use tollgate_model::{Route, Service};
use uuid::Uuid;

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
}

/// A route as the proxy needs it after matching.
#[derive(Debug)]
pub struct CompiledRoute {
    pub id: Uuid,
    pub name: Option<String>,
    /// `None` when the route has no service or its service is not in the snapshot.
    pub service: Option<Arc<Service>>,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    pub https_redirect_status_code: u16,
    hosts: Vec<HostPattern>,
    methods: Vec<Method>,
    headers: Vec<HeaderRule>,
    accepts_http: bool,
    accepts_https: bool,
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
    values: Vec<String>,
}

#[derive(Debug)]
enum PathPattern {
    Prefix(String),
    Regex(Regex),
}

/// One (route, path) pair in priority order.
#[derive(Debug)]
struct Entry {
    route: Arc<CompiledRoute>,
    path: Option<PathPattern>,
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
}

/// The routes of one control plane, in the order they are tried.
#[derive(Debug, Default)]
pub struct Router {
    entries: Vec<Entry>,
}

impl Router {
    /// Builds the router of a snapshot: resolves each route's service, compiles regexes and sorts
    /// routes by Kong's priority rules.
    pub fn compile(services: &[Service], routes: &[Route]) -> Router {
        let services: std::collections::HashMap<Uuid, Arc<Service>> = services
            .iter()
            .map(|s| (s.id, Arc::new(s.clone())))
            .collect();
        let mut keyed = Vec::new();
        for route in routes {
            let compiled = Arc::new(compile_route(route, &services));
            let rules = RouteRules::of(route);
            let paths = route.paths.as_deref().unwrap_or_default();
            if paths.is_empty() {
                keyed.push((
                    rules.key(route, None),
                    Entry {
                        route: compiled,
                        path: None,
                    },
                ));
                continue;
            }
            for raw in paths {
                let Some(path) = compile_path(route.id, raw) else {
                    continue;
                };
                keyed.push((
                    rules.key(route, Some(&path)),
                    Entry {
                        route: compiled.clone(),
                        path: Some(path),
                    },
                ));
            }
        }
        keyed.sort_by(|(a, _), (b, _)| a.cmp(b));
        Router {
            entries: keyed.into_iter().map(|(_, e)| e).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds the route for a request: the first entry in priority order that matches it.
    pub fn find<'r, 'p>(&'r self, request: &RequestFacts<'p>) -> Routed<'r, 'p> {
        let mut wrong_scheme = None;
        for entry in &self.entries {
            let route = &entry.route;
            if !route.matches_host(request)
                || !route.matches_method(request.method)
                || !route.matches_headers(request.headers)
            {
                continue;
            }
            let (matched, postfix) = match &entry.path {
                None => (None, None),
                Some(pattern) => match pattern.match_len(request.path) {
                    Some(len) => (Some(&request.path[..len]), Some(&request.path[len..])),
                    None => continue,
                },
            };
            if !route.accepts(request.scheme) {
                wrong_scheme.get_or_insert(route);
                continue;
            }
            return Routed::Matched(RouteMatch {
                route,
                matched,
                postfix,
            });
        }
        match wrong_scheme {
            Some(route) => Routed::WrongScheme(route),
            None => Routed::NoMatch,
        }
    }
}

impl CompiledRoute {
    fn accepts(&self, scheme: Scheme) -> bool {
        match scheme {
            Scheme::Http => self.accepts_http,
            Scheme::Https => self.accepts_https,
        }
    }

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

    fn matches_headers(&self, headers: &HeaderMap) -> bool {
        self.headers.iter().all(|rule| {
            headers.get_all(&rule.name).iter().any(|value| {
                value.to_str().is_ok_and(|value| {
                    rule.values
                        .iter()
                        .any(|wanted| wanted.eq_ignore_ascii_case(value))
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

fn compile_route(
    route: &Route,
    services: &std::collections::HashMap<Uuid, Arc<Service>>,
) -> CompiledRoute {
    let hosts = route
        .hosts
        .iter()
        .flatten()
        .filter_map(|raw| {
            let lower = raw.to_ascii_lowercase();
            match split_host_port(&lower) {
                Ok((name, port)) => Some(HostPattern {
                    wildcard: name.contains('*'),
                    name: name.to_string(),
                    port,
                }),
                Err(message) => {
                    tracing::warn!(route = %route.id, host = %raw, %message, "skipping invalid route host");
                    None
                }
            }
        })
        .collect();
    let methods = route
        .methods
        .iter()
        .flatten()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .collect();
    let headers = route
        .headers
        .iter()
        .flatten()
        .filter_map(|(name, values)| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            Some(HeaderRule {
                name,
                values: values.clone(),
            })
        })
        .collect();
    CompiledRoute {
        id: route.id,
        name: route.name.clone(),
        service: route.service.and_then(|fk| services.get(&fk.id).cloned()),
        strip_path: route.strip_path,
        preserve_host: route.preserve_host,
        path_handling: PathHandling::parse(&route.path_handling),
        https_redirect_status_code: u16::try_from(route.https_redirect_status_code).unwrap_or(426),
        hosts,
        methods,
        headers,
        accepts_http: route.protocols.iter().any(|p| p == "http"),
        accepts_https: route.protocols.iter().any(|p| p == "https"),
    }
}

fn compile_path(route: Uuid, raw: &str) -> Option<PathPattern> {
    match raw.strip_prefix('~') {
        // Kong anchors regex paths at the start of the path (PCRE's `a` flag).
        Some(pattern) => match Regex::new(&format!("^(?:{pattern})")) {
            Ok(regex) => Some(PathPattern::Regex(regex)),
            Err(e) => {
                tracing::warn!(%route, path = %raw, error = %e, "skipping invalid regex path");
                None
            }
        },
        None => Some(PathPattern::Prefix(raw.to_string())),
    }
}

/// The parts of a route that rank it, shared by its per-path entries.
struct RouteRules {
    has_hosts: bool,
    has_headers: bool,
    has_methods: bool,
    plain_hosts_only: bool,
    wildcard_host_with_port: bool,
    header_count: usize,
}

impl RouteRules {
    fn of(route: &Route) -> RouteRules {
        let hosts = route.hosts.as_deref().unwrap_or_default();
        let wildcard = |h: &&String| h.contains('*');
        RouteRules {
            has_hosts: !hosts.is_empty(),
            has_headers: route.headers.as_ref().is_some_and(|h| !h.is_empty()),
            has_methods: route.methods.as_ref().is_some_and(|m| !m.is_empty()),
            plain_hosts_only: !hosts.is_empty() && !hosts.iter().any(|h| wildcard(&h)),
            wildcard_host_with_port: hosts
                .iter()
                .filter(wildcard)
                .any(|h| matches!(split_host_port(h), Ok((_, Some(_))))),
            header_count: route.headers.as_ref().map_or(0, |h| h.len()),
        }
    }

    fn key(&self, route: &Route, path: Option<&PathPattern>) -> PriorityKey {
        const HOST: u8 = 0x40;
        const HEADER: u8 = 0x20;
        const URI: u8 = 0x10;
        const METHOD: u8 = 0x08;
        let mut categories = 0u8;
        for (set, bit) in [
            (self.has_hosts, HOST),
            (self.has_headers, HEADER),
            (path.is_some(), URI),
            (self.has_methods, METHOD),
        ] {
            if set {
                categories |= bit;
            }
        }
        let mut submatch = 0u8;
        if self.wildcard_host_with_port {
            submatch |= 0x04;
        }
        if self.plain_hosts_only {
            submatch |= 0x02;
        }
        if matches!(path, Some(PathPattern::Regex(_))) {
            submatch |= 0x01;
        }
        PriorityKey {
            category_count: categories.count_ones(),
            categories,
            submatch,
            header_count: self.header_count,
            regex_priority: route.regex_priority,
            prefix_len: match path {
                Some(PathPattern::Prefix(p)) => p.len(),
                _ => 0,
            },
            created_at: route.created_at,
            id: route.id,
        }
    }
}

/// Sorts ascending into the order routes are tried: every "more is better" field compares in
/// reverse.
#[derive(PartialEq, Eq)]
struct PriorityKey {
    category_count: u32,
    categories: u8,
    submatch: u8,
    header_count: usize,
    regex_priority: i64,
    prefix_len: usize,
    created_at: i64,
    id: Uuid,
}

impl Ord for PriorityKey {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .category_count
            .cmp(&self.category_count)
            .then(other.categories.cmp(&self.categories))
            .then(other.submatch.cmp(&self.submatch))
            .then(other.header_count.cmp(&self.header_count))
            .then(other.regex_priority.cmp(&self.regex_priority))
            .then(other.prefix_len.cmp(&self.prefix_len))
            .then(self.created_at.cmp(&other.created_at))
            .then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for PriorityKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use tollgate_model::entity::{build, Build};

    fn route(input: Value, created_at: i64) -> Route {
        build::<Route>(Build::Create { id: Uuid::now_v7() }, &input, created_at)
            .unwrap_or_else(|e| panic!("bad test route {input}: {e}"))
    }

    fn find<'r>(
        router: &'r Router,
        method: &str,
        host: &str,
        path: &str,
    ) -> Option<&'r Arc<CompiledRoute>> {
        find_with(router, method, host, path, &HeaderMap::new())
    }

    fn find_with<'r>(
        router: &'r Router,
        method: &str,
        host: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&'r Arc<CompiledRoute>> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (host, port) = match host.split_once(':') {
            Some((h, p)) => (h, p.parse().unwrap()),
            None => (host, 80),
        };
        let facts = RequestFacts {
            method: &method,
            host,
            port,
            path,
            headers,
            scheme: Scheme::Http,
        };
        match router.find(&facts) {
            Routed::Matched(m) => Some(m.route),
            _ => None,
        }
    }

    fn named(r: Option<&Arc<CompiledRoute>>) -> Option<&str> {
        r.and_then(|r| r.name.as_deref())
    }

    #[test]
    fn longer_prefix_wins_and_regex_beats_prefix() {
        let router = Router::compile(
            &[],
            &[
                route(json!({"name": "short", "paths": ["/api"]}), 1),
                route(json!({"name": "long", "paths": ["/api/v1"]}), 2),
                route(json!({"name": "re", "paths": ["~/api/v\\d+/items$"]}), 3),
            ],
        );
        assert_eq!(
            named(find(&router, "GET", "x", "/api/v1/users")),
            Some("long")
        );
        assert_eq!(named(find(&router, "GET", "x", "/api/v2")), Some("short"));
        assert_eq!(
            named(find(&router, "GET", "x", "/api/v1/items")),
            Some("re")
        );
        assert_eq!(named(find(&router, "GET", "x", "/nope")), None);
    }

    #[test]
    fn more_categories_and_plain_hosts_first() {
        let router = Router::compile(
            &[],
            &[
                route(json!({"name": "path", "paths": ["/"]}), 1),
                route(
                    json!({"name": "wild", "hosts": ["*.example.com"], "paths": ["/"]}),
                    2,
                ),
                route(
                    json!({"name": "plain", "hosts": ["a.example.com"], "paths": ["/"]}),
                    3,
                ),
                route(
                    json!({"name": "get", "hosts": ["a.example.com"], "paths": ["/"], "methods": ["GET"]}),
                    4,
                ),
            ],
        );
        assert_eq!(
            named(find(&router, "GET", "a.example.com", "/x")),
            Some("get")
        );
        assert_eq!(
            named(find(&router, "POST", "a.example.com", "/x")),
            Some("plain")
        );
        assert_eq!(
            named(find(&router, "POST", "b.example.com", "/x")),
            Some("wild")
        );
        assert_eq!(
            named(find(&router, "POST", "other.org", "/x")),
            Some("path")
        );
    }

    #[test]
    fn regex_priority_and_created_at_break_ties() {
        let router = Router::compile(
            &[],
            &[
                route(
                    json!({"name": "low", "paths": ["~/r/.*"], "regex_priority": 1}),
                    1,
                ),
                route(
                    json!({"name": "high", "paths": ["~/r/[a-z]+"], "regex_priority": 5}),
                    2,
                ),
                route(json!({"name": "old", "paths": ["/same"]}), 3),
                route(json!({"name": "new", "paths": ["/same"]}), 4),
            ],
        );
        assert_eq!(named(find(&router, "GET", "x", "/r/abc")), Some("high"));
        assert_eq!(named(find(&router, "GET", "x", "/r/123")), Some("low"));
        assert_eq!(named(find(&router, "GET", "x", "/same")), Some("old"));
    }

    #[test]
    fn host_ports_headers_and_schemes() {
        let router = Router::compile(
            &[],
            &[
                route(
                    json!({"name": "port", "hosts": ["api.example.com:8000"]}),
                    1,
                ),
                route(
                    json!({"name": "hdr", "headers": {"X-Version": ["V2", "v3"]}}),
                    2,
                ),
                route(
                    json!({"name": "tls", "paths": ["/secure"], "protocols": ["https"]}),
                    3,
                ),
            ],
        );
        assert_eq!(
            named(find(&router, "GET", "api.example.com:8000", "/")),
            Some("port")
        );
        assert_eq!(named(find(&router, "GET", "api.example.com", "/")), None);
        let mut headers = HeaderMap::new();
        headers.insert("x-version", "v2".parse().unwrap());
        assert_eq!(
            named(find_with(&router, "GET", "x", "/", &headers)),
            Some("hdr")
        );
        headers.insert("x-version", "v1".parse().unwrap());
        assert_eq!(named(find_with(&router, "GET", "x", "/", &headers)), None);
        let method = Method::GET;
        let facts = RequestFacts {
            method: &method,
            host: "x",
            port: 80,
            path: "/secure",
            headers: &HeaderMap::new(),
            scheme: Scheme::Http,
        };
        assert!(
            matches!(router.find(&facts), Routed::WrongScheme(r) if r.name.as_deref() == Some("tls"))
        );
    }

    #[test]
    fn regex_match_reports_matched_part() {
        let router = Router::compile(&[], &[route(json!({"paths": ["~/v\\d+"]}), 1)]);
        let method = Method::GET;
        let facts = RequestFacts {
            method: &method,
            host: "x",
            port: 80,
            path: "/v12/things",
            headers: &HeaderMap::new(),
            scheme: Scheme::Http,
        };
        let Routed::Matched(m) = router.find(&facts) else {
            panic!("no match");
        };
        assert_eq!((m.matched, m.postfix), (Some("/v12"), Some("/things")));
        let facts = RequestFacts {
            path: "/x/v12",
            ..facts
        };
        assert!(matches!(router.find(&facts), Routed::NoMatch));
    }
}
