//! Load generator and side-by-side benchmarks against nginx, HAProxy and direct calls
//! (DESIGN §12). Empty until the edge performance issue; figures go to `loadtest/RESULTS.md`.
