//! Arbitrary routes and requests: compiling never panics, and the indexed `Router::find` always
//! names the same entry as the reference `Router::find_linear`. Words come mostly from small
//! vocabularies, so that routes and requests meet often; raw strings cover the rest.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use tollgate_edge::router::authority::split_authority;
use tollgate_edge::router::{normalize_path, RequestFacts, Routed, Router, Scheme};
use tollgate_model::entity::{build, Build};
use tollgate_model::Route;
use uuid::Uuid;

const HOSTS: &[&str] = &[
    "a.test",
    "b.test",
    "*.test",
    "a.*",
    "x.a.test",
    "a.test:8000",
    "*.a.test:443",
    "A.Test",
    "test",
    "*.",
    ".*",
    "*",
    "a..test",
    "[::1]",
];
const PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/ab",
    "/b",
    "/%61b",
    "/a/../b",
    "~/a/\\d+",
    "~/(?<x>[ab])b?",
    "~/b$",
    "~/A",
    "~",
    "~(",
    "",
    "a",
    "/é",
    "/a%2Fb",
];
const METHODS: &[&str] = &["GET", "POST", "get", "", "GE T"];
const HEADER_NAMES: &[&str] = &["x-a", "X-B", "host", "bad name", ""];
const HEADER_VALUES: &[&str] = &["1", "two", "TWO", "~*^t", "~*W", "~*(", "~*", ""];
const SNIS: &[&str] = &["a.test", "*.test", "b.test.", ".", "A.TEST"];
const PROTOCOLS: &[&[&str]] = &[&["http", "https"], &["https"], &["http"], &[]];
const REQUEST_AUTHORITIES: &[&str] = &[
    "a.test",
    "b.test:8000",
    "x.a.test",
    "y.x.a.test",
    "a.b",
    "test",
    "c.test:443",
    "a",
    ".",
    "a.",
    ".a",
    "[::1]:80",
    "A.TEST",
];
const REQUEST_PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/1", "/a/b/c", "/ab", "/abc", "/b", "/bb", "/x", "/A", "", "//a",
    "/a/./b", "/%61/1", "/a%2fb",
];

/// A word from a vocabulary, or any string.
#[derive(Arbitrary, Debug)]
enum Word {
    Known(u8),
    Raw(String),
}

impl Word {
    fn pick(&self, vocabulary: &[&str]) -> String {
        match self {
            Word::Known(n) => vocabulary[usize::from(*n) % vocabulary.len()].to_string(),
            Word::Raw(s) => s.clone(),
        }
    }
}

fn words(words: &Option<Vec<Word>>, vocabulary: &[&str]) -> Option<Vec<String>> {
    words
        .as_ref()
        .map(|ws| ws.iter().take(4).map(|w| w.pick(vocabulary)).collect())
}

#[derive(Arbitrary, Debug)]
struct RouteSpec {
    /// Few distinct ids, so that ties on every other field happen.
    id: u8,
    hosts: Option<Vec<Word>>,
    paths: Option<Vec<Word>>,
    methods: Option<Vec<Word>>,
    headers: Option<Vec<(Word, Vec<Word>)>>,
    snis: Option<Vec<Word>>,
    protocols: u8,
    regex_priority: i8,
    created_at: u8,
}

#[derive(Arbitrary, Debug)]
struct RequestSpec {
    method: Word,
    authority: Word,
    path: Word,
    normalize: bool,
    headers: Vec<(Word, Word)>,
    https: bool,
    sni: Option<Word>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<RouteSpec>,
    requests: Vec<RequestSpec>,
}

fn template() -> &'static Route {
    static TEMPLATE: OnceLock<Route> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let input = serde_json::json!({"paths": ["/"]});
        build::<Route>(Build::Create { id: Uuid::nil() }, &input, 0).expect("a valid route")
    })
}

fn route(spec: &RouteSpec) -> Route {
    let mut route = template().clone();
    route.id = Uuid::from_u128(u128::from(spec.id % 8));
    route.hosts = words(&spec.hosts, HOSTS);
    route.paths = words(&spec.paths, PATHS);
    route.methods = words(&spec.methods, METHODS);
    route.snis = words(&spec.snis, SNIS);
    route.headers = spec.headers.as_ref().map(|headers| {
        let mut map = BTreeMap::new();
        for (name, values) in headers.iter().take(3) {
            let values = values
                .iter()
                .take(3)
                .map(|v| v.pick(HEADER_VALUES))
                .collect();
            map.insert(name.pick(HEADER_NAMES), values);
        }
        map
    });
    route.protocols = PROTOCOLS[usize::from(spec.protocols) % PROTOCOLS.len()]
        .iter()
        .map(|p| p.to_string())
        .collect();
    route.regex_priority = i64::from(spec.regex_priority);
    route.created_at = i64::from(spec.created_at % 4);
    route
}

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

fn check(router: &Router, spec: &RequestSpec) {
    let method = Method::from_bytes(spec.method.pick(METHODS).as_bytes()).unwrap_or(Method::GET);
    let authority = spec.authority.pick(REQUEST_AUTHORITIES);
    let (host, port) = split_authority(&authority);
    let host = host.to_ascii_lowercase();
    let scheme = if spec.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let raw_path = spec.path.pick(REQUEST_PATHS);
    let path = if spec.normalize {
        normalize_path(&raw_path).into_owned()
    } else {
        raw_path
    };
    let mut headers = HeaderMap::new();
    for (name, value) in spec.headers.iter().take(4) {
        let name = HeaderName::from_bytes(name.pick(HEADER_NAMES).as_bytes());
        let value = HeaderValue::from_str(&value.pick(HEADER_VALUES));
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    let sni = spec.sni.as_ref().map(|s| s.pick(SNIS).to_ascii_lowercase());
    let facts = RequestFacts {
        method: &method,
        host: &host,
        port: port.unwrap_or(scheme.default_port()),
        path: &path,
        headers: &headers,
        scheme,
        sni: sni.as_deref(),
    };
    let indexed = router.find(&facts);
    let linear = router.find_linear(&facts);
    assert!(same(&indexed, &linear), "find and find_linear disagree");
    if let Routed::Matched(m) = indexed {
        if let (Some(matched), Some(postfix)) = (m.matched, m.postfix) {
            assert_eq!(format!("{matched}{postfix}"), path);
        }
        let _ = m.captures();
    }
}

fuzz_target!(|input: Input| {
    let routes: Vec<Route> = input.routes.iter().take(24).map(route).collect();
    let router = Router::compile(&[], &routes);
    for spec in input.requests.iter().take(16) {
        check(&router, spec);
    }
});
