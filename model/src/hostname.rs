//! Host names as routes and control planes use them: exact (`api.example.com`) or with one
//! wildcard label at either end (`*.example.com`, `example.*`).

/// Checks a host name (no port), allowing a leading or trailing `*` label when `wildcard` is set.
pub fn validate_host(host: &str, wildcard: bool) -> Result<(), String> {
    if host.is_empty() {
        return Err("must not be empty".into());
    }
    if host.len() > 253 {
        return Err("must be at most 253 characters".into());
    }
    let labels: Vec<&str> = host.split('.').collect();
    let stars = labels.iter().filter(|l| **l == "*").count();
    if stars > 0 {
        if !wildcard {
            return Err("wildcards are not allowed here".into());
        }
        let at_end = labels.first() == Some(&"*") || labels.last() == Some(&"*");
        if stars > 1 || !at_end || labels.len() < 2 {
            return Err("invalid wildcard: only one '*' at the start or end of the name".into());
        }
    }
    for label in labels {
        if label == "*" {
            continue;
        }
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid hostname: {host}"));
        }
        let ok = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok || label.starts_with('-') || label.ends_with('-') {
            return Err(format!("invalid hostname: {host}"));
        }
    }
    Ok(())
}

/// Splits `host[:port]` as Kong accepts it in `route.hosts`; the port must be 0..=65535.
pub fn split_host_port(value: &str) -> Result<(&str, Option<u16>), String> {
    match value.rsplit_once(':') {
        Some((host, port)) => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("invalid port number in '{value}'"))?;
            Ok((host, Some(port)))
        }
        None => Ok((value, None)),
    }
}

/// Whether `pattern` (exact or wildcard, already lowercase) matches `host` (lowercase, no port).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        host.len() > suffix.len() + 1
            && host.ends_with(suffix)
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
    } else if let Some(prefix) = pattern.strip_suffix(".*") {
        host.len() > prefix.len() + 1
            && host.starts_with(prefix)
            && host.as_bytes()[prefix.len()] == b'.'
    } else {
        pattern == host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exact_and_wildcard_names() {
        assert!(validate_host("api.example.com", false).is_ok());
        assert!(validate_host("*.example.com", true).is_ok());
        assert!(validate_host("example.*", true).is_ok());
        assert!(validate_host("*.example.com", false).is_err());
        assert!(validate_host("a.*.com", true).is_err());
        assert!(validate_host("", false).is_err());
        assert!(validate_host("bad host", false).is_err());
        assert!(validate_host("-bad.com", false).is_err());
    }

    #[test]
    fn wildcard_matching() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "aexample.com"));
        assert!(host_matches("example.*", "example.org"));
        assert!(!host_matches("example.*", "examples.org"));
        assert!(host_matches("api.example.com", "api.example.com"));
    }
}
