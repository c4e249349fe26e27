//! The value consistent hashing hashes: taken from the request as the upstream's `hash_on` says,
//! then as `hash_fallback` says when the first yields nothing, with Kong's normalization. With
//! `hash_on: cookie` and no cookie, a value is made up and handed back to set on the response.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, COOKIE};
use http::HeaderMap;
use tollgate_model::Upstream;

/// Looks up a named capture of the route's regex path.
pub type UriCapture<'a> = dyn Fn(&str) -> Option<String> + Sync + 'a;

/// What a request offers to hash on.
pub struct RequestKeys<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
    /// The normalized request path (Kong hashes nginx's normalized `$uri`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// A named capture of the route's regex path, when one matched.
    pub uri_capture: &'a UriCapture<'a>,
}

#[derive(Debug, Clone)]
enum Source {
    None,
    /// There are no consumers yet: always absent, so the fallback applies.
    Consumer,
    Ip,
    Header(HeaderName),
    Cookie {
        name: String,
        path: String,
    },
    Path,
    QueryArg(String),
    UriCapture(String),
}

#[derive(Debug, Clone)]
pub struct HashOn {
    primary: Source,
    fallback: Source,
}

/// The value to hash and, when it was made up, the `Set-Cookie` that makes the client keep it.
pub struct HashValue<'a> {
    pub value: Cow<'a, str>,
    pub set_cookie: Option<HeaderValue>,
}

impl HashOn {
    pub fn compile(upstream: &Upstream) -> HashOn {
        let source = |kind: &str,
                      header: &Option<String>,
                      arg: &Option<String>,
                      capture: &Option<String>| {
            let named = |name: &Option<String>| name.clone().filter(|n| !n.is_empty());
            match kind {
                "consumer" => Source::Consumer,
                "ip" => Source::Ip,
                "header" => header
                    .as_deref()
                    .and_then(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
                    .map_or(Source::None, Source::Header),
                "cookie" => upstream
                    .hash_on_cookie
                    .clone()
                    .filter(|n| !n.is_empty())
                    .map_or(Source::None, |name| Source::Cookie {
                        name,
                        path: upstream.hash_on_cookie_path.clone(),
                    }),
                "path" => Source::Path,
                "query_arg" => named(arg).map_or(Source::None, Source::QueryArg),
                "uri_capture" => named(capture).map_or(Source::None, Source::UriCapture),
                _ => Source::None,
            }
        };
        HashOn {
            primary: source(
                &upstream.hash_on,
                &upstream.hash_on_header,
                &upstream.hash_on_query_arg,
                &upstream.hash_on_uri_capture,
            ),
            fallback: source(
                &upstream.hash_fallback,
                &upstream.hash_fallback_header,
                &upstream.hash_fallback_query_arg,
                &upstream.hash_fallback_uri_capture,
            ),
        }
    }

    /// Kong hashes the empty string when neither source yields a value.
    pub fn value<'a>(&self, keys: &RequestKeys<'a>) -> HashValue<'a> {
        for source in [&self.primary, &self.fallback] {
            if let Some(value) = take(source, keys) {
                return HashValue {
                    value,
                    set_cookie: None,
                };
            }
            if let Source::Cookie { name, path } = source {
                let value = uuid::Uuid::new_v4().to_string();
                let cookie = format!("{name}={value}; Path={path}; SameSite=Lax; HttpOnly");
                return HashValue {
                    value: Cow::Owned(value),
                    set_cookie: HeaderValue::from_str(&cookie).ok(),
                };
            }
        }
        HashValue {
            value: Cow::Borrowed(""),
            set_cookie: None,
        }
    }
}

fn take<'a>(source: &Source, keys: &RequestKeys<'a>) -> Option<Cow<'a, str>> {
    match source {
        Source::None | Source::Consumer => None,
        Source::Ip => Some(Cow::Owned(keys.client_ip.to_string())),
        Source::Header(name) => {
            let mut values = keys.headers.get_all(name).iter();
            let first = values.next()?;
            let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
            for value in values {
                joined.push_str(", ");
                joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
            }
            Some(Cow::Owned(joined))
        }
        Source::Cookie { name, .. } => cookie(keys.headers, name).map(Cow::Borrowed),
        Source::Path => Some(Cow::Borrowed(keys.path)),
        Source::QueryArg(name) => query_arg(keys.query?, name).map(Cow::Owned),
        Source::UriCapture(name) => (keys.uri_capture)(name).map(Cow::Owned),
    }
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Kong's normalization: decoded, an argument without `=` is `true`, several values are sorted
/// and joined with `,`.
fn query_arg(query: &str, name: &str) -> Option<String> {
    let mut values: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = match pair.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (pair, None),
            };
            (decode(key) == name).then(|| value.map_or_else(|| "true".to_string(), decode))
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort();
    Some(values.join(","))
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use tollgate_model::entity::{build, Build};

    fn upstream(input: serde_json::Value) -> Upstream {
        build::<Upstream>(
            Build::Create {
                id: uuid::Uuid::nil(),
            },
            &input,
            1,
        )
        .unwrap()
    }

    fn value_of(
        upstream: &Upstream,
        headers: &HeaderMap,
        path: &str,
        query: Option<&str>,
    ) -> String {
        let keys = RequestKeys {
            client_ip: "10.0.0.7".parse().unwrap(),
            headers,
            path,
            query,
            uri_capture: &|name| (name == "id").then(|| "42".to_string()),
        };
        HashOn::compile(upstream).value(&keys).value.into_owned()
    }

    #[test]
    fn each_source_and_the_fallback() {
        let mut headers = HeaderMap::new();
        headers.append("x-user", HeaderValue::from_static("a"));
        headers.append("x-user", HeaderValue::from_static("b"));
        headers.insert(COOKIE, HeaderValue::from_static("other=1; sticky=abc"));
        let by = |input| upstream(json!(input));
        let header = by(json!({"name": "u", "hash_on": "header", "hash_on_header": "X-User"}));
        assert_eq!(value_of(&header, &headers, "/p", None), "a, b");
        let ip = by(json!({"name": "u", "hash_on": "ip"}));
        assert_eq!(value_of(&ip, &headers, "/p", None), "10.0.0.7");
        let cookie = by(json!({"name": "u", "hash_on": "cookie", "hash_on_cookie": "sticky"}));
        assert_eq!(value_of(&cookie, &headers, "/p", None), "abc");
        let path = by(json!({"name": "u", "hash_on": "path"}));
        assert_eq!(value_of(&path, &headers, "/p/q", None), "/p/q");
        let arg = by(json!({"name": "u", "hash_on": "query_arg", "hash_on_query_arg": "k"}));
        assert_eq!(
            value_of(&arg, &headers, "/", Some("k=b&x=1&k=a%20c")),
            "a c,b"
        );
        assert_eq!(value_of(&arg, &headers, "/", Some("k")), "true");
        let capture =
            by(json!({"name": "u", "hash_on": "uri_capture", "hash_on_uri_capture": "id"}));
        assert_eq!(value_of(&capture, &headers, "/", None), "42");
        let fallback = by(
            json!({"name": "u", "hash_on": "consumer", "hash_fallback": "query_arg", "hash_fallback_query_arg": "k"}),
        );
        assert_eq!(value_of(&fallback, &headers, "/", Some("k=7")), "7");
        assert_eq!(value_of(&fallback, &headers, "/", None), "");
    }

    #[test]
    fn a_missing_cookie_is_made_up_and_set() {
        let u = upstream(
            json!({"name": "u", "hash_on": "cookie", "hash_on_cookie": "sticky", "hash_on_cookie_path": "/app"}),
        );
        let headers = HeaderMap::new();
        let keys = RequestKeys {
            client_ip: "10.0.0.7".parse().unwrap(),
            headers: &headers,
            path: "/",
            query: None,
            uri_capture: &|_| None,
        };
        let made = HashOn::compile(&u).value(&keys);
        let cookie = made.set_cookie.unwrap();
        assert_eq!(
            cookie.to_str().unwrap(),
            format!("sticky={}; Path=/app; SameSite=Lax; HttpOnly", made.value)
        );
    }
}
