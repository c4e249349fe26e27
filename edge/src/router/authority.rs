//! The request's authority (`Host` header or absolute-form URI) split into the host name the
//! router matches and the explicit port, if any.

/// Splits `host[:port]` or `[v6]:port`; a port that does not parse is left in the host, and an
/// empty port (`host:`) counts as none, as in Kong.
pub fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((v6, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (v6, port);
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((host, "")) => (host, None),
        Some((host, port)) => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (authority, None),
        },
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split() {
        assert_eq!(
            split_authority("a.example.com:8000"),
            ("a.example.com", Some(8000))
        );
        assert_eq!(split_authority("a.example.com"), ("a.example.com", None));
        assert_eq!(split_authority("a.example.com:"), ("a.example.com", None));
        assert_eq!(split_authority("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_authority("[::1]"), ("::1", None));
        assert_eq!(split_authority("bad:port"), ("bad:port", None));
        assert_eq!(split_authority("a:99999"), ("a:99999", None));
        assert_eq!(split_authority(""), ("", None));
    }
}
