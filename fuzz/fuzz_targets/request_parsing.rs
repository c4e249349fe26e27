//! The request parsing Tollgate owns, on arbitrary input: splitting the authority into host and
//! port, normalizing the path, building the upstream path, and the model's host-pattern helpers.
//! None may panic, and each keeps the promises its docs make.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_edge::router::authority::split_authority;
use tollgate_edge::router::{normalize_path, upstream_path, PathHandling};
use tollgate_model::hostname::{host_matches, split_host_port, validate_host};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    authority: &'a str,
    path: &'a str,
    service_path: Option<&'a str>,
    /// Where in the normalized path the route's match ends.
    matched_len: u16,
    strip_path: bool,
    v1: bool,
    pattern: &'a str,
}

/// Whether `part` lies inside `whole`'s memory.
fn is_within(part: &str, whole: &str) -> bool {
    let whole = whole.as_bytes().as_ptr_range();
    let part = part.as_bytes().as_ptr_range();
    whole.start <= part.start && part.end <= whole.end
}

fuzz_target!(|input: Input<'_>| {
    let (host, port) = split_authority(input.authority);
    assert!(is_within(host, input.authority));
    if port.is_some() {
        assert!(host.len() < input.authority.len());
    }

    let normalized = normalize_path(input.path);
    if input.path.starts_with('/') {
        assert!(normalized.starts_with('/'));
        assert!(!normalized.contains("//"), "{normalized}");
        assert!(
            !normalized.split('/').any(|s| s == "." || s == ".."),
            "{normalized}"
        );
        // What went upstream once must not decode into something else the next time.
        assert_eq!(normalize_path(&normalized), normalized);
    } else {
        assert_eq!(normalized, input.path);
    }

    let cut = usize::from(input.matched_len).min(normalized.len());
    let postfix = normalized.get(cut..);
    let handling = if input.v1 {
        PathHandling::V1
    } else {
        PathHandling::V0
    };
    let service_path = input.service_path.filter(|p| p.starts_with('/'));
    let upstream = upstream_path(
        service_path,
        &normalized,
        postfix,
        input.strip_path,
        handling,
    );
    assert!(upstream.starts_with('/'), "{upstream}");

    let _ = split_host_port(input.authority);
    let _ = validate_host(input.pattern, true);
    let _ = host_matches(input.pattern, host);
});
