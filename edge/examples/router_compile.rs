//! How long compiling a 10,000-route router takes, and what one match costs against it.
//! Run it optimized: `cargo run --release -p tollgate-edge --example router_compile`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use serde_json::json;
use tollgate_edge::router::{RequestFacts, Routed, Router, Scheme};
use tollgate_model::entity::{build, Build};
use tollgate_model::{Route, Service};
use uuid::Uuid;

const ROUTES: usize = 10_000;

fn main() {
    let (services, routes) = snapshot(ROUTES);
    let mut compile_times = Vec::new();
    let mut router = Router::default();
    for _ in 0..7 {
        let started = Instant::now();
        router = black_box(Router::compile(&services, &routes));
        compile_times.push(started.elapsed());
    }
    compile_times.sort();
    println!(
        "compile {ROUTES} routes: median {:.1} ms, best {:.1} ms",
        millis(compile_times[compile_times.len() / 2]),
        millis(compile_times[0]),
    );

    // Every 10th route with a regex path instead: compiling regexes dominates, and a router
    // compiled after the one it replaces takes the regexes that did not change.
    let regex_routes: Vec<Route> = routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let mut route = route.clone();
            if i % 10 == 0 {
                route.paths = Some(vec![format!("~/svc{i}/v(?<version>\\d+)/items")]);
            }
            route
        })
        .collect();
    let previous = Router::compile(&services, &regex_routes);
    let (mut fresh, mut after) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let started = Instant::now();
        black_box(Router::compile(&services, &regex_routes));
        fresh.push(started.elapsed());
        let started = Instant::now();
        black_box(Router::compile_after(
            &services,
            &regex_routes,
            Some(&previous),
        ));
        after.push(started.elapsed());
    }
    fresh.sort();
    after.sort();
    println!(
        "compile {ROUTES} routes, {} with regex paths: median {:.1} ms; after the previous version: median {:.1} ms",
        ROUTES / 10,
        millis(fresh[fresh.len() / 2]),
        millis(after[after.len() / 2]),
    );

    let requests = requests(ROUTES);
    let headers = HeaderMap::new();
    let method = Method::GET;
    let facts: Vec<RequestFacts<'_>> = requests
        .iter()
        .map(|(host, path)| RequestFacts {
            method: &method,
            host,
            port: 80,
            path,
            headers: &headers,
            scheme: Scheme::Http,
            sni: None,
        })
        .collect();
    let hits = facts
        .iter()
        .filter(|f| matches!(router.find(f), Routed::Matched(_)))
        .count();
    println!("{} sample requests, {hits} of them match", facts.len());

    let per_find = time_per_call(&facts, 500, |f| {
        matches!(router.find(f), Routed::Matched(_))
    });
    println!("find (indexed): {per_find:.0} ns per request");
    let per_linear = time_per_call(&facts, 5, |f| {
        matches!(router.find_linear(f), Routed::Matched(_))
    });
    println!("find_linear:    {per_linear:.0} ns per request");

    let (services, routes) = snapshot(1);
    let small = Router::compile(&services, &routes);
    let one = &facts[..1];
    let per_small = time_per_call(one, 500_000, |f| {
        matches!(small.find(f), Routed::Matched(_))
    });
    println!("find with 1 route: {per_small:.0} ns per request");
}

/// `count` routes with one plain path each; every 4th also has an exact host, every 10th a
/// wildcard host.
fn snapshot(count: usize) -> (Vec<Service>, Vec<Route>) {
    let service = build::<Service>(
        Build::Create { id: Uuid::now_v7() },
        &json!({"url": "http://upstream.internal:8080"}),
        1,
    )
    .expect("a valid service");
    let template = build::<Route>(
        Build::Create { id: Uuid::now_v7() },
        &json!({"paths": ["/"], "service": {"id": service.id}}),
        1,
    )
    .expect("a valid route");
    let routes = (0..count)
        .map(|i| {
            let mut route = template.clone();
            route.id = Uuid::now_v7();
            route.created_at = i64::try_from(i).unwrap_or(i64::MAX);
            route.paths = Some(vec![format!("/svc{i}/v1")]);
            if i % 4 == 0 {
                route.hosts = Some(vec![format!("tenant{}.example.com", i % 500)]);
            } else if i % 10 == 5 {
                route.hosts = Some(vec![format!("*.w{}.example.com", i % 50)]);
            }
            route
        })
        .collect();
    (vec![service], routes)
}

/// Host and path of requests spread over the routes, and a few that match nothing.
fn requests(count: usize) -> Vec<(String, String)> {
    let mut requests: Vec<(String, String)> = (0..count)
        .step_by(7)
        .map(|i| {
            let host = if i % 4 == 0 {
                format!("tenant{}.example.com", i % 500)
            } else if i % 10 == 5 {
                format!("api.w{}.example.com", i % 50)
            } else {
                "api.example.com".to_string()
            };
            (host, format!("/svc{i}/v1/items/42"))
        })
        .collect();
    for i in 0..50 {
        requests.push(("api.example.com".into(), format!("/missing/{i}")));
    }
    requests
}

/// Mean nanoseconds of one `call` over `rounds` passes through `facts`.
fn time_per_call(
    facts: &[RequestFacts<'_>],
    rounds: usize,
    call: impl Fn(&RequestFacts<'_>) -> bool,
) -> f64 {
    let started = Instant::now();
    let mut matched = 0usize;
    for _ in 0..rounds {
        for f in facts {
            matched += usize::from(call(black_box(f)));
        }
    }
    black_box(matched);
    started.elapsed().as_nanos() as f64 / (rounds * facts.len()) as f64
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
