//! Where a request's candidate routes are: buckets of entry numbers (an entry's number is its
//! rank in priority order) keyed by what a request must have for the entry to match — the exact
//! host or a wildcard host's fixed part, then the plain path prefix. Built once per snapshot;
//! looking candidates up hashes a few slices of the host and path and allocates nothing.
//!
//! With thousands of routes the lookup's cost is memory, not instructions: every table a request
//! touches is a likely cache miss. So a request looks up its longest matching prefix once, and
//! reaches the shorter prefixes it also matches only when they could still hold a better entry
//! (each bucket knows the best entry among the prefixes it starts with).

use fnv::FnvHashMap;

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

/// What a bucket's entries are known to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    /// The plain path prefix of this many bytes (the bucket's key): every entry in a prefix
    /// bucket has exactly that prefix, and the request's path starts with it.
    Prefix(usize),
    /// Nothing about the path.
    Nothing,
}

/// Every entry is in the buckets of each of its host patterns, or in `any_host` when it has
/// none; inside those, under its plain path prefix, or in `rest` when its path is a regex or it
/// has none. Buckets list entry numbers in ascending (priority) order. FNV rather than the
/// standard library's SipHash: keys are short and come from the snapshot, not the request.
#[derive(Debug, Default)]
pub(super) struct RouteIndex {
    exact_hosts: FnvHashMap<Box<str>, Buckets>,
    host_suffixes: FnvHashMap<Box<str>, Buckets>,
    host_prefixes: FnvHashMap<Box<str>, Buckets>,
    any_host: Buckets,
}

#[derive(Debug, Default)]
struct Buckets {
    by_prefix: FnvHashMap<Box<str>, PrefixBucket>,
    /// The distinct lengths of `by_prefix`'s keys, longest first: the first that finds a bucket
    /// finds the request's longest matching prefix.
    prefix_lengths: Vec<usize>,
    rest: Vec<u32>,
}

#[derive(Debug)]
struct PrefixBucket {
    /// The best entry (the lowest number) with this prefix, kept here so that the common bucket
    /// of one entry is read without another memory access.
    first: u32,
    /// The bucket's other entries, ascending.
    more: Vec<u32>,
    /// The length of the longest other key this key starts with (`None` for none): the next
    /// shorter prefix a request matching this one also matches.
    parent_len: Option<usize>,
    /// The best entry among the buckets of every shorter prefix this key starts with
    /// (`u32::MAX` for none): once a match ranks better, the shorter prefixes are not looked at.
    ancestors_first: u32,
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

    /// Calls `scan` with the entries that may match `host` (lowercase, no port) and `path`, a
    /// bucket at a time, with what the bucket's entries are known to match. `scan` answers the
    /// best entry matched so far (`u32::MAX` for none); buckets that cannot hold a better one
    /// may be left out.
    pub(super) fn candidates(
        &self,
        host: &str,
        path: &str,
        scan: impl FnMut(&[u32], Known) -> u32,
    ) {
        let mut scan = Scan {
            scan,
            best: u32::MAX,
        };
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
        let Some(prefix) = prefix else {
            // A route with two host patterns sharing a key files the same entry twice in a row.
            if self.rest.last() != Some(&entry) {
                self.rest.push(entry);
            }
            return;
        };
        match self.by_prefix.get_mut(prefix) {
            Some(bucket) => {
                if bucket.first != entry && bucket.more.last() != Some(&entry) {
                    bucket.more.push(entry);
                }
            }
            None => {
                let bucket = PrefixBucket {
                    first: entry,
                    more: Vec::new(),
                    parent_len: None,
                    ancestors_first: u32::MAX,
                };
                self.by_prefix.insert(prefix.into(), bucket);
            }
        }
    }

    fn finish(&mut self) {
        let mut lengths: Vec<usize> = self.by_prefix.keys().map(|k| k.len()).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        self.prefix_lengths = lengths;

        // Shortest keys first, so that a key's parent is complete before the key.
        let mut keys: Vec<Box<str>> = self.by_prefix.keys().cloned().collect();
        keys.sort_unstable_by_key(|k| k.len());
        for key in keys {
            let parent = self
                .prefix_lengths
                .iter()
                .filter(|&&len| len < key.len())
                .find_map(|&len| {
                    let bucket = self.by_prefix.get(key.get(..len)?)?;
                    Some((len, bucket.first.min(bucket.ancestors_first)))
                });
            if let (Some(bucket), Some((len, first))) = (self.by_prefix.get_mut(&key), parent) {
                bucket.parent_len = Some(len);
                bucket.ancestors_first = first;
            }
        }
    }

    fn candidates<F: FnMut(&[u32], Known) -> u32>(&self, path: &str, scan: &mut Scan<F>) {
        let bucket_of = |len: usize| Some((len, self.by_prefix.get(path.get(..len)?)?));
        let mut next = self.prefix_lengths.iter().find_map(|&len| bucket_of(len));
        while let Some((len, bucket)) = next {
            scan.bucket(std::slice::from_ref(&bucket.first), Known::Prefix(len));
            scan.bucket(&bucket.more, Known::Prefix(len));
            if scan.best <= bucket.ancestors_first {
                break;
            }
            next = bucket.parent_len.and_then(bucket_of);
        }
        scan.bucket(&self.rest, Known::Nothing);
    }
}

/// The caller's scan, and the best entry it has matched so far.
struct Scan<F> {
    scan: F,
    best: u32,
}

impl<F: FnMut(&[u32], Known) -> u32> Scan<F> {
    /// Scans `entries` (ascending) unless none of them can beat the best match.
    fn bucket(&mut self, entries: &[u32], known: Known) {
        if entries.first().is_some_and(|&first| first < self.best) {
            self.best = (self.scan)(entries, known);
        }
    }
}
