//! Router unit tests. Every lookup here also checks that the indexed [`Router::find`] agrees with
//! [`Router::find_linear`].
#![allow(clippy::unwrap_used)]

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tollgate_model::entity::{build, Build};

fn route(input: Value, created_at: i64) -> Route {
    build::<Route>(Build::Create { id: Uuid::now_v7() }, &input, created_at)
        .unwrap_or_else(|e| panic!("bad test route {input}: {e}"))
}

/// A request as the tests write it; [`Request::facts`] borrows it the way the proxy does.
struct Request {
    method: Method,
    host: String,
    port: u16,
    path: String,
    headers: HeaderMap,
    scheme: Scheme,
    sni: Option<String>,
}

impl Request {
    /// `host` may carry a port; the scheme is plain HTTP.
    fn new(method: &str, host: &str, path: &str) -> Request {
        let (host, port) = match host.split_once(':') {
            Some((h, p)) => (h, p.parse().unwrap()),
            None => (host, 80),
        };
        Request {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            host: host.to_string(),
            port,
            path: path.to_string(),
            headers: HeaderMap::new(),
            scheme: Scheme::Http,
            sni: None,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Request {
        self.headers.append(name, value.parse().unwrap());
        self
    }

    fn tls(mut self, sni: Option<&str>) -> Request {
        self.scheme = Scheme::Https;
        self.port = 443;
        self.sni = sni.map(str::to_string);
        self
    }

    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            method: &self.method,
            host: &self.host,
            port: self.port,
            path: &self.path,
            headers: &self.headers,
            scheme: self.scheme,
            sni: self.sni.as_deref(),
        }
    }
}

/// Whether two outcomes name the same entry.
fn same(a: &Routed<'_, '_>, b: &Routed<'_, '_>) -> bool {
    match (a, b) {
        (Routed::Matched(a), Routed::Matched(b)) => {
            Arc::ptr_eq(a.route, b.route) && a.matched == b.matched && a.postfix == b.postfix
        }
        (Routed::WrongScheme(a), Routed::WrongScheme(b)) => Arc::ptr_eq(a, b),
        (Routed::NoMatch, Routed::NoMatch) => true,
        _ => false,
    }
}

fn describe(routed: &Routed<'_, '_>) -> String {
    match routed {
        Routed::Matched(m) => format!("{:?} via {:?}", m.route.id, m.matched),
        Routed::WrongScheme(r) => format!("wrong scheme {:?}", r.id),
        Routed::NoMatch => "no match".into(),
    }
}

fn routed<'r, 'p>(router: &'r Router, request: &RequestFacts<'p>) -> Routed<'r, 'p> {
    let indexed = router.find(request);
    let linear = router.find_linear(request);
    assert!(
        same(&indexed, &linear),
        "find: {}, find_linear: {} for {} {}{}",
        describe(&indexed),
        describe(&linear),
        request.method,
        request.host,
        request.path
    );
    indexed
}

/// The name of the route that serves `request`, if one does.
fn name<'r>(router: &'r Router, request: &Request) -> Option<&'r str> {
    match routed(router, &request.facts()) {
        Routed::Matched(m) => m.route.name.as_deref(),
        _ => None,
    }
}

fn get<'r>(router: &'r Router, host: &str, path: &str) -> Option<&'r str> {
    name(router, &Request::new("GET", host, path))
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
    assert_eq!(get(&router, "x", "/api/v1/users"), Some("long"));
    assert_eq!(get(&router, "x", "/api/v2"), Some("short"));
    assert_eq!(get(&router, "x", "/api/v1/items"), Some("re"));
    assert_eq!(get(&router, "x", "/nope"), None);
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
    let post = |host| name(&router, &Request::new("POST", host, "/x"));
    assert_eq!(get(&router, "a.example.com", "/x"), Some("get"));
    assert_eq!(post("a.example.com"), Some("plain"));
    assert_eq!(post("b.example.com"), Some("wild"));
    assert_eq!(post("other.org"), Some("path"));
}

#[test]
fn no_hosts_rank_between_plain_and_wildcard_hosts() {
    let router = Router::compile(
        &[],
        &[
            route(json!({"name": "wild", "hosts": ["*.example.com"]}), 1),
            route(json!({"name": "get", "methods": ["GET"]}), 2),
            route(json!({"name": "plain", "hosts": ["a.example.com"]}), 3),
        ],
    );
    assert_eq!(get(&router, "a.example.com", "/"), Some("plain"));
    assert_eq!(get(&router, "b.example.com", "/"), Some("get"));
    let post = Request::new("POST", "b.example.com", "/");
    assert_eq!(name(&router, &post), Some("wild"));
}

#[test]
fn headers_count_before_regex_paths() {
    let router = Router::compile(
        &[],
        &[
            route(
                json!({"name": "re", "paths": ["~/a"], "methods": ["GET"]}),
                1,
            ),
            route(
                json!({"name": "one", "paths": ["/a"], "headers": {"x-a": ["1"]}}),
                2,
            ),
            route(
                json!({"name": "two", "paths": ["/"], "headers": {"x-a": ["1"], "x-b": ["2"]}}),
                3,
            ),
        ],
    );
    let request = |headers: &[(&'static str, &str)]| {
        let mut request = Request::new("GET", "h", "/a");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request
    };
    assert_eq!(
        name(&router, &request(&[("x-a", "1"), ("x-b", "2")])),
        Some("two")
    );
    assert_eq!(name(&router, &request(&[("x-a", "1")])), Some("one"));
    assert_eq!(name(&router, &request(&[])), Some("re"));
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
    assert_eq!(get(&router, "x", "/r/abc"), Some("high"));
    assert_eq!(get(&router, "x", "/r/123"), Some("low"));
    assert_eq!(get(&router, "x", "/same"), Some("old"));
}

#[test]
fn regex_priority_orders_only_regex_paths() {
    let router = Router::compile(
        &[],
        &[
            route(
                json!({"name": "short", "paths": ["/a"], "regex_priority": 10}),
                1,
            ),
            route(json!({"name": "long", "paths": ["/a/b"]}), 2),
            route(
                json!({"name": "re", "paths": ["~/a/b/c"], "regex_priority": -5}),
                3,
            ),
        ],
    );
    assert_eq!(get(&router, "x", "/a/b/x"), Some("long"));
    // A regex path comes before every plain one, whatever its regex_priority.
    assert_eq!(get(&router, "x", "/a/b/c"), Some("re"));
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
    assert_eq!(get(&router, "api.example.com:8000", "/"), Some("port"));
    assert_eq!(get(&router, "api.example.com", "/"), None);
    let v2 = Request::new("GET", "x", "/").header("x-version", "v2");
    assert_eq!(name(&router, &v2), Some("hdr"));
    let v1 = Request::new("GET", "x", "/").header("x-version", "v1");
    assert_eq!(name(&router, &v1), None);
    let plain = Request::new("GET", "x", "/secure");
    assert!(
        matches!(routed(&router, &plain.facts()), Routed::WrongScheme(r) if r.name.as_deref() == Some("tls"))
    );
    let secure = Request::new("GET", "x", "/secure").tls(None);
    assert_eq!(name(&router, &secure), Some("tls"));
}

#[test]
fn header_regex_values_match_case_insensitively_anywhere() {
    let router = Router::compile(
        &[],
        &[
            route(
                json!({"name": "re", "headers": {"x-version": ["legacy", "~*^v[23]$"]}}),
                1,
            ),
            route(json!({"name": "beta", "headers": {"x-tag": ["~*beta"]}}), 2),
        ],
    );
    let with = |name: &'static str, value: &str| Request::new("GET", "x", "/").header(name, value);
    assert_eq!(name(&router, &with("x-version", "V2")), Some("re"));
    assert_eq!(name(&router, &with("x-version", "LEGACY")), Some("re"));
    assert_eq!(name(&router, &with("x-version", "v4")), None);
    assert_eq!(name(&router, &with("x-version", "v22")), None);
    assert_eq!(name(&router, &with("x-tag", "pre-BETA-1")), Some("beta"));
    let repeated = with("x-version", "v9").header("x-version", "v3");
    assert_eq!(name(&router, &repeated), Some("re"));
}

#[test]
fn snis_match_tls_requests_and_count_in_priority() {
    let mut wildcard = route(
        json!({"name": "wild-sni", "paths": ["/"], "protocols": ["https"], "snis": ["placeholder.test"]}),
        1,
    );
    // The model takes only exact names without a trailing dot for now; the router takes what
    // Kong's does, and wildcards as for hosts.
    wildcard.snis = Some(vec!["*.wild.test".into()]);
    let mut exact = route(
        json!({"name": "sni", "paths": ["/"], "protocols": ["https"], "snis": ["placeholder.test"]}),
        2,
    );
    exact.snis = Some(vec!["API.example.com.".into()]);
    let router = Router::compile(
        &[],
        &[
            wildcard,
            exact,
            route(json!({"name": "path", "paths": ["/"]}), 3),
        ],
    );
    let tls = |sni| Request::new("GET", "x", "/a").tls(sni);
    assert_eq!(name(&router, &tls(Some("api.example.com"))), Some("sni"));
    assert_eq!(name(&router, &tls(Some("other.test"))), Some("path"));
    assert_eq!(name(&router, &tls(None)), Some("path"));
    assert_eq!(name(&router, &tls(Some("a.wild.test"))), Some("wild-sni"));
    // Over plain HTTP the SNI rule is not checked: the https-only route still asks for TLS.
    let plain = Request::new("GET", "x", "/a");
    assert!(matches!(
        routed(&router, &plain.facts()),
        Routed::Matched(m) if m.route.name.as_deref() == Some("path")
    ));
    let only_sni = Router::compile(
        &[],
        &[route(
            json!({"name": "sni", "protocols": ["https"], "snis": ["api.example.com"]}),
            1,
        )],
    );
    assert!(matches!(
        routed(&only_sni, &plain.facts()),
        Routed::WrongScheme(r) if r.name.as_deref() == Some("sni")
    ));
}

#[test]
fn regex_match_reports_matched_part_and_captures() {
    let router = Router::compile(
        &[],
        &[
            route(
                json!({"paths": ["~/v(?<version>\\d+)/users/(?<user>[a-z]+)"]}),
                1,
            ),
            route(json!({"paths": ["/plain"]}), 2),
        ],
    );
    let request = Request::new("GET", "x", "/v12/users/john/things");
    let Routed::Matched(m) = routed(&router, &request.facts()) else {
        panic!("no match");
    };
    assert_eq!(
        (m.matched, m.postfix),
        (Some("/v12/users/john"), Some("/things"))
    );
    assert_eq!(m.capture("version"), Some("12"));
    assert_eq!(m.capture("user"), Some("john"));
    assert_eq!(m.capture("nope"), None);
    let captures = m.captures().unwrap();
    assert_eq!((&captures[1], &captures[2]), ("12", "john"));

    let plain = Request::new("GET", "x", "/plain/x");
    let Routed::Matched(m) = routed(&router, &plain.facts()) else {
        panic!("no match");
    };
    assert!(m.captures().is_none());
    let unanchored = Request::new("GET", "x", "/x/v12/users/john");
    assert!(matches!(
        routed(&router, &unanchored.facts()),
        Routed::NoMatch
    ));
}

#[test]
fn plain_paths_are_normalized_like_requests() {
    let router = Router::compile(
        &[],
        &[route(json!({"name": "api", "paths": ["/%61pi"]}), 1)],
    );
    assert_eq!(get(&router, "x", "/api/x"), Some("api"));
}

#[test]
fn rules_that_cannot_be_compiled_drop_the_route() {
    let mut bad_header = route(json!({"name": "bad-header", "paths": ["/h"]}), 1);
    bad_header.headers = Some([("bad name".to_string(), vec!["1".to_string()])].into());
    let mut bad_method = route(json!({"name": "bad-method", "paths": ["/m"]}), 1);
    bad_method.methods = Some(vec!["GE T".into()]);
    let mut bad_host = route(json!({"name": "bad-host", "paths": ["/o"]}), 1);
    bad_host.hosts = Some(vec!["a:b".into()]);
    let router = Router::compile(&[], &[bad_header, bad_method, bad_host]);
    assert!(router.is_empty());
    assert_eq!(get(&router, "x", "/h"), None);
}

#[test]
fn ten_thousand_routes_route_like_the_linear_scan() {
    let template = route(json!({"paths": ["/"]}), 0);
    let routes: Vec<Route> = (0..10_000)
        .map(|i| {
            let mut r = template.clone();
            r.id = Uuid::from_u128(i + 1);
            r.name = Some(format!("r{i}"));
            r.created_at = i64::try_from(i).unwrap();
            r.paths = Some(vec![format!("/svc{i}/")]);
            if i % 3 == 0 {
                r.hosts = Some(vec![format!("t{i}.example.com")]);
            } else if i % 7 == 0 {
                r.hosts = Some(vec![format!("*.w{i}.example.com")]);
            } else if i % 100 == 1 {
                r.paths = Some(vec![format!("~/re{i}/(?<id>\\d+)")]);
            }
            r
        })
        .collect();
    let router = Router::compile(&[], &routes);
    for i in (0..10_000).step_by(37) {
        let (host, path) = if i % 3 == 0 {
            (format!("t{i}.example.com"), format!("/svc{i}/x"))
        } else if i % 7 == 0 {
            (format!("a.w{i}.example.com"), format!("/svc{i}/x"))
        } else if i % 100 == 1 {
            ("any.test".to_string(), format!("/re{i}/42"))
        } else {
            ("any.test".to_string(), format!("/svc{i}/"))
        };
        let expected = format!("r{i}");
        assert_eq!(get(&router, &host, &path), Some(expected.as_str()));
        // Right path, wrong host: nothing else claims it.
        if i % 3 == 0 {
            assert_eq!(get(&router, "t.example.com", &path), None);
        }
    }
}

const ROUTE_HOSTS: &[&str] = &[
    "a.test",
    "b.test",
    "*.test",
    "a.*",
    "x.a.test",
    "a.test:8000",
    "*.a.test:8000",
    "A.Test",
    "test",
];
const ROUTE_PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/ab",
    "/b",
    "/%61b",
    "~/a/\\d+",
    "~/(?<x>[ab])b?",
    "~/b$",
    "~/A",
];
const METHODS: &[&str] = &["GET", "POST"];
const HEADER_NAMES: &[&str] = &["x-a", "x-b"];
const ROUTE_HEADER_VALUES: &[&str] = &["1", "two", "~*^t", "~*W"];
const SNIS: &[&str] = &["a.test", "*.test", "b.test."];
const REQUEST_HOSTS: &[&str] = &[
    "a.test",
    "b.test",
    "x.a.test",
    "y.x.a.test",
    "a.b",
    "a.test.com",
    "test",
    "c.test",
    "a",
];
const REQUEST_PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/1", "/a/b/c", "/ab", "/abc", "/b", "/bb", "/x", "/A", "",
];
const REQUEST_HEADER_VALUES: &[&str] = &["1", "TWO", "tw", "w", "no"];
const REQUEST_SNIS: &[&str] = &["a.test", "b.test", "x.test", "other"];

fn pick<'a>(rng: &mut StdRng, pool: &[&'a str]) -> &'a str {
    pool[rng.random_range(0..pool.len())]
}

/// `None`, empty, or one to three values from `pool`.
fn some_of(rng: &mut StdRng, pool: &[&str]) -> Option<Vec<String>> {
    match rng.random_range(0..6) {
        0..=2 => None,
        3 => Some(Vec::new()),
        _ => Some(
            (0..rng.random_range(1..=3))
                .map(|_| pick(rng, pool).to_string())
                .collect(),
        ),
    }
}

fn random_route(rng: &mut StdRng, template: &Route) -> Route {
    let mut r = template.clone();
    r.id = Uuid::from_u128(rng.random());
    r.hosts = some_of(rng, ROUTE_HOSTS);
    r.paths = some_of(rng, ROUTE_PATHS);
    r.methods = some_of(rng, METHODS);
    r.snis = if rng.random_bool(0.2) {
        some_of(rng, SNIS)
    } else {
        None
    };
    r.headers = None;
    if rng.random_bool(0.3) {
        let mut headers = std::collections::BTreeMap::new();
        for name in HEADER_NAMES {
            if rng.random_bool(0.6) {
                let values = some_of(rng, ROUTE_HEADER_VALUES).unwrap_or_default();
                headers.insert(name.to_string(), values);
            }
        }
        r.headers = Some(headers);
    }
    r.protocols = match rng.random_range(0..4) {
        0 => vec!["https".into()],
        1 => vec!["http".into()],
        _ => vec!["http".into(), "https".into()],
    };
    r.regex_priority = rng.random_range(-1..=2);
    r.created_at = rng.random_range(0..4);
    r
}

fn random_request(rng: &mut StdRng) -> Request {
    let mut request = Request::new(
        pick(rng, METHODS),
        pick(rng, REQUEST_HOSTS),
        pick(rng, REQUEST_PATHS),
    );
    request.port = [80, 443, 8000][rng.random_range(0..3)];
    for name in HEADER_NAMES {
        for _ in 0..rng.random_range(0..3) {
            request = request.header(name, pick(rng, REQUEST_HEADER_VALUES));
        }
    }
    if rng.random_bool(0.5) {
        request.scheme = Scheme::Https;
        request.sni = rng
            .random_bool(0.8)
            .then(|| pick(rng, REQUEST_SNIS).to_string());
    }
    request
}

#[test]
fn a_router_compiled_after_another_takes_its_regexes_and_routes_the_same() {
    let v1 = vec![
        route(json!({"name": "items", "paths": ["~/api/v\\d+/items$"]}), 1),
        route(
            json!({"name": "beta", "paths": ["/b"], "headers": {"x-tag": ["~*beta"]}}),
            2,
        ),
        route(json!({"name": "ids", "paths": ["~/old/(?<id>\\d+)"]}), 3),
    ];
    let previous = Router::compile(&[], &v1);
    // The next version changes one regex and adds a route.
    let mut v2 = v1.clone();
    v2[2].paths = Some(vec!["~/new/(?<id>\\d+)".into()]);
    v2.push(route(json!({"name": "plain", "paths": ["/p"]}), 4));
    let router = Router::compile_after(&[], &v2, Some(&previous));
    assert_eq!(get(&router, "x", "/api/v2/items"), Some("items"));
    assert_eq!(get(&router, "x", "/api/v2/items/1"), None);
    let beta = Request::new("GET", "x", "/b").header("x-tag", "BETA-2");
    assert_eq!(name(&router, &beta), Some("beta"));
    assert_eq!(name(&router, &Request::new("GET", "x", "/b")), None);
    assert_eq!(get(&router, "x", "/old/7"), None);
    let request = Request::new("GET", "x", "/new/7");
    match routed(&router, &request.facts()) {
        Routed::Matched(m) => assert_eq!(m.capture("id"), Some("7")),
        other => panic!("expected a match, got {}", describe(&other)),
    }
    assert_eq!(get(&router, "x", "/p"), Some("plain"));

    // On random routes, half kept from one version to the next: the same answers as a router
    // compiled from scratch.
    let template = route(json!({"paths": ["/"]}), 0);
    let mut rng = StdRng::seed_from_u64(0x5eed_0fa9_9100);
    for _ in 0..300 {
        let before: Vec<Route> = (0..rng.random_range(1..16))
            .map(|_| random_route(&mut rng, &template))
            .collect();
        let mut after: Vec<Route> = before.iter().step_by(2).cloned().collect();
        after.extend((0..rng.random_range(0..8)).map(|_| random_route(&mut rng, &template)));
        let previous = Router::compile(&[], &before);
        let reused = Router::compile_after(&[], &after, Some(&previous));
        let fresh = Router::compile(&[], &after);
        for _ in 0..16 {
            let request = random_request(&mut rng);
            let facts = request.facts();
            assert_eq!(
                describe(&routed(&reused, &facts)),
                describe(&routed(&fresh, &facts))
            );
        }
    }
}

#[test]
fn find_agrees_with_find_linear_on_random_routes() {
    let template = route(json!({"paths": ["/"]}), 0);
    let mut rng = StdRng::seed_from_u64(0x7011_6a7e);
    let mut matched = 0;
    for _ in 0..2_000 {
        let routes: Vec<Route> = (0..rng.random_range(1..24))
            .map(|_| random_route(&mut rng, &template))
            .collect();
        let router = Router::compile(&[], &routes);
        for _ in 0..16 {
            let request = random_request(&mut rng);
            if let Routed::Matched(_) = routed(&router, &request.facts()) {
                matched += 1;
            }
        }
    }
    // The pools are small so that requests often match; make sure they still do.
    assert!(matched > 5_000, "only {matched} requests matched");
}
