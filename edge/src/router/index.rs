//! Where a request's candidate routes are: buckets of entry numbers (an entry's number is its
//! rank in priority order) keyed by what a request must have for the entry to match — the exact
//! host or a wildcard host's fixed part, then the plain path prefix. Built once per snapshot;
//! looking candidates up hashes a few slices of the host and path and allocates nothing.

use std::collections::HashMap;

/// The fixed part of a route's host pattern, as [`tollgate_model::hostname::host_matches`] reads
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostKey<'a> {
    Exact(&'a str),
    /// `*.example.com` → `example.com`.
    Suffix(&'a str),
    /// `example.*` → `example`.
    Prefix(&'a str),
}

impl<'a> HostKey<'a> {
    /// `pattern` is lowercase and without its port.
    pub(super) fn of(pattern: &'a str) -> HostKey<'a> {
        if let Some(suffix) = pattern.strip_prefix("*.") {
            HostKey::Suffix(suffix)
        } else if let Some(prefix) = pattern.strip_suffix(".*") {
            HostKey::Prefix(prefix)
        } else {
            HostKey::Exact(pattern)
        }
    }
}

/// Every entry is in the buckets of each of its host patterns, or in `any_host` when it has
/// none; inside those, under its plain path prefix, or in `rest` when its path is a regex or it
/// has none. Buckets list entry numbers in ascending (priority) order.
#[derive(Debug, Default)]
pub(super) struct RouteIndex {
    exact_hosts: HashMap<Box<str>, Buckets>,
    host_suffixes: HashMap<Box<str>, Buckets>,
    host_prefixes: HashMap<Box<str>, Buckets>,
    any_host: Buckets,
}

#[derive(Debug, Default)]
struct Buckets {
    by_prefix: HashMap<Box<str>, Vec<u32>>,
    /// The distinct lengths of `by_prefix`'s keys, longest first: longer prefixes usually rank
    /// higher, so looking at them first finds the winner early and cuts the other scans short.
    prefix_lengths: Vec<usize>,
    rest: Vec<u32>,
}

impl RouteIndex {
    /// Files entry number `entry`; entries must be added in ascending order.
    pub(super) fn add(&mut self, entry: u32, hosts: &[HostKey<'_>], prefix: Option<&str>) {
        if hosts.is_empty() {
            self.any_host.add(entry, prefix);
        }
        for host in hosts {
            let (map, key) = match *host {
                HostKey::Exact(key) => (&mut self.exact_hosts, key),
                HostKey::Suffix(key) => (&mut self.host_suffixes, key),
                HostKey::Prefix(key) => (&mut self.host_prefixes, key),
            };
            map.entry(key.into()).or_default().add(entry, prefix);
        }
    }

    /// Readies the lookups once every entry is in.
    pub(super) fn finish(&mut self) {
        let maps = [
            &mut self.exact_hosts,
            &mut self.host_suffixes,
            &mut self.host_prefixes,
        ];
        for buckets in maps.into_iter().flat_map(|map| map.values_mut()) {
            buckets.finish();
        }
        self.any_host.finish();
    }

    /// Calls `scan` with every bucket that may hold an entry matching `host` (lowercase, no
    /// port) and `path`. Together the buckets hold every entry that can match.
    pub(super) fn candidates<'a>(
        &'a self,
        host: &str,
        path: &str,
        mut scan: impl FnMut(&'a [u32]),
    ) {
        if let Some(buckets) = self.exact_hosts.get(host) {
            buckets.candidates(path, &mut scan);
        }
        if !self.host_suffixes.is_empty() || !self.host_prefixes.is_empty() {
            // The wildcard stands for at least one character on its side of the dot.
            for (dot, _) in host.match_indices('.') {
                if dot > 0 {
                    if let Some(buckets) = self.host_suffixes.get(&host[dot + 1..]) {
                        buckets.candidates(path, &mut scan);
                    }
                }
                if dot + 1 < host.len() {
                    if let Some(buckets) = self.host_prefixes.get(&host[..dot]) {
                        buckets.candidates(path, &mut scan);
                    }
                }
            }
        }
        self.any_host.candidates(path, &mut scan);
    }
}

impl Buckets {
    fn add(&mut self, entry: u32, prefix: Option<&str>) {
        let bucket = match prefix {
            Some(prefix) => self.by_prefix.entry(prefix.into()).or_default(),
            None => &mut self.rest,
        };
        // A route with two host patterns sharing a key files the same entry twice in a row.
        if bucket.last() != Some(&entry) {
            bucket.push(entry);
        }
    }

    fn finish(&mut self) {
        self.prefix_lengths = self.by_prefix.keys().map(|k| k.len()).collect();
        self.prefix_lengths.sort_unstable_by(|a, b| b.cmp(a));
        self.prefix_lengths.dedup();
    }

    fn candidates<'a>(&'a self, path: &str, scan: &mut impl FnMut(&'a [u32])) {
        for &len in &self.prefix_lengths {
            if let Some(bucket) = path.get(..len).and_then(|key| self.by_prefix.get(key)) {
                scan(bucket);
            }
        }
        if !self.rest.is_empty() {
            scan(&self.rest);
        }
    }
}
