//! Request paths: the normalized form routes are matched against (and forwarded with), and the
//! upstream path built from the service's path following Kong's `path_handling` v0/v1 rules.

use std::borrow::Cow;

/// Kong's `route.path_handling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathHandling {
    V0,
    V1,
}

impl PathHandling {
    pub fn parse(value: &str) -> PathHandling {
        if value == "v1" {
            PathHandling::V1
        } else {
            PathHandling::V0
        }
    }
}

/// The path as routes see it: percent-encoded unreserved characters decoded (other escapes kept,
/// with upper-case hex; a `%` that starts no escape becomes `%25`), `.` and `..` segments
/// resolved, repeated slashes merged. Normalizing twice changes nothing. Matching on this
/// form keeps `/%61dmin`, `//admin` and `/x/../admin` from slipping past a route for `/admin`; it
/// is also what goes upstream, so the upstream serves what was matched. Reserved characters
/// (`%2F` …) stay encoded, so the result never needs re-escaping. Most paths are returned as
/// they are, without allocating.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if !path.starts_with('/') || !needs_normalizing(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded[1..].split('/') {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Whether `path` has a `%`, an empty segment (`//`) or a `.` or `..` segment. One pass over the
/// bytes: this runs for every request, and most paths need nothing.
fn needs_normalizing(path: &str) -> bool {
    let bytes = path.as_bytes();
    let dot_segment = |segment: &[u8]| segment == b"." || segment == b"..";
    let mut segment_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'%' => return true,
            b'/' => {
                if (i > 0 && bytes[i - 1] == b'/') || dot_segment(&bytes[segment_start..i]) {
                    return true;
                }
                segment_start = i + 1;
            }
            _ => {}
        }
    }
    dot_segment(&bytes[segment_start..])
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let byte = hi << 4 | lo;
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(byte));
                } else {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
                i += 3;
                continue;
            }
        }
        if bytes[i] == b'%' {
            // A `%` that starts no escape is escaped itself: otherwise decoding `%%36` would
            // make a new escape, `%6`, that the upstream decodes once more.
            out.push_str("%25");
            i += 1;
            continue;
        }
        // A path from a parsed URI is ASCII; anything else is copied through unchanged.
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path sent upstream, from the service's path (`None` is `/`), the normalized request path
/// and, when the route matched by path, the part after the match. This is Kong's algorithm,
/// including its documented table of v0 and v1 results.
pub fn upstream_path(
    service_path: Option<&str>,
    request_path: &str,
    postfix: Option<&str>,
    strip_path: bool,
    handling: PathHandling,
) -> String {
    let base = service_path.unwrap_or("/");
    // Everything after the leading slash; what is left when the route matched by something other
    // than a path.
    let rest = request_path.get(1..).unwrap_or("");
    let postfix = postfix.unwrap_or(rest);
    let base_ends_slash = base.ends_with('/');
    let trimmed = || &base[..base.len() - 1];
    match handling {
        PathHandling::V1 => {
            if strip_path {
                if base_ends_slash && postfix.starts_with('/') {
                    concat(trimmed(), postfix)
                } else {
                    concat(base, postfix)
                }
            } else {
                concat(base, rest)
            }
        }
        PathHandling::V0 if base_ends_slash => {
            if !strip_path {
                concat(base, rest)
            } else if postfix.is_empty() {
                if base == "/" {
                    "/".to_string()
                } else if request_path.ends_with('/') {
                    base.to_string()
                } else {
                    trimmed().to_string()
                }
            } else if postfix.starts_with('/') {
                concat(trimmed(), postfix)
            } else {
                concat(base, postfix)
            }
        }
        PathHandling::V0 => {
            if !strip_path {
                if request_path == "/" {
                    base.to_string()
                } else {
                    concat(base, request_path)
                }
            } else if postfix.is_empty() {
                if request_path.len() > 1 && request_path.ends_with('/') {
                    concat(base, "/")
                } else {
                    base.to_string()
                }
            } else if postfix.starts_with('/') {
                concat(base, postfix)
            } else {
                let mut out = concat(base, "/");
                out.push_str(postfix);
                out
            }
        }
    }
}

fn concat(a: &str, b: &str) -> String {
    let mut out = String::with_capacity(a.len() + b.len());
    out.push_str(a);
    out.push_str(b);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The one-pass check agrees with the plain reading of its rule on every string of up to six
    /// characters from the ones that matter.
    #[test]
    fn the_needs_normalizing_check_agrees_with_its_rule() {
        let rule = |path: &str| {
            path.contains('%')
                || path.contains("//")
                || path
                    .split('/')
                    .any(|segment| segment == "." || segment == "..")
        };
        let alphabet = ['/', '.', '%', 'a'];
        let mut checked = 0;
        for len in 0..=6u32 {
            for mut n in 0..alphabet.len().pow(len) {
                let mut path = String::new();
                for _ in 0..len {
                    path.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                assert_eq!(needs_normalizing(&path), rule(&path), "{path:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 5461);
    }

    #[test]
    fn normalizes_only_what_needs_it() {
        assert!(matches!(normalize_path("/a/b/c"), Cow::Borrowed(_)));
        assert_eq!(normalize_path("/a//b"), "/a/b");
        assert_eq!(normalize_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(normalize_path("/a/.."), "/");
        assert_eq!(normalize_path("/../../x"), "/x");
        assert_eq!(normalize_path("/%61dmin"), "/admin");
        assert_eq!(normalize_path("/x/%2e%2E/admin"), "/admin");
        assert_eq!(normalize_path("/a%2fb%3f"), "/a%2Fb%3F");
        assert_eq!(normalize_path("/bad%zz"), "/bad%25zz");
        assert_eq!(normalize_path("/end%4"), "/end%254");
        assert_eq!(normalize_path("/%%361dmin"), "/%2561dmin");
        assert_eq!(normalize_path("/%2561dmin"), "/%2561dmin");
        assert_eq!(normalize_path("*"), "*");
    }

    /// Kong's documented table: service path `/s`, request path = route path + `req`.
    #[test]
    fn kong_path_handling_table() {
        use PathHandling::{V0, V1};
        let cases = [
            ("/fv0", false, V0, "/fv0req", "/s/fv0req"),
            ("/fv1", false, V1, "/fv1req", "/sfv1req"),
            ("/tv0", true, V0, "/tv0req", "/s/req"),
            ("/tv1", true, V1, "/tv1req", "/sreq"),
            ("/fv0/", false, V0, "/fv0/req", "/s/fv0/req"),
            ("/fv1/", false, V1, "/fv1/req", "/sfv1/req"),
            ("/tv0/", true, V0, "/tv0/req", "/s/req"),
            ("/tv1/", true, V1, "/tv1/req", "/sreq"),
        ];
        for (route_path, strip, handling, request, expected) in cases {
            let postfix = &request[route_path.len()..];
            let got = upstream_path(Some("/s"), request, Some(postfix), strip, handling);
            assert_eq!(got, expected, "{route_path} strip={strip} {handling:?}");
        }
    }

    #[test]
    fn service_paths_with_and_without_slashes() {
        use PathHandling::V0;
        assert_eq!(upstream_path(None, "/api/x", Some("/x"), true, V0), "/x");
        assert_eq!(upstream_path(None, "/api", Some(""), true, V0), "/");
        assert_eq!(
            upstream_path(None, "/api/x", Some("/x"), false, V0),
            "/api/x"
        );
        assert_eq!(
            upstream_path(Some("/s/"), "/api/x", Some("/x"), true, V0),
            "/s/x"
        );
        assert_eq!(upstream_path(Some("/s/"), "/api", Some(""), true, V0), "/s");
        assert_eq!(
            upstream_path(Some("/s/"), "/api/", Some("/"), true, V0),
            "/s/"
        );
        assert_eq!(upstream_path(Some("/s"), "/", None, false, V0), "/s");
        assert_eq!(upstream_path(Some("/s"), "/x", None, true, V0), "/s/x");
    }
}
