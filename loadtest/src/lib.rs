//! Load generator and side-by-side benchmarks against nginx, HAProxy and direct calls
//! (DESIGN §12). Figures go to `loadtest/RESULTS.md`; `edge_bench` runs the edge scenarios,
//! `console_render` the console's.

pub mod driver;
pub mod peers;
pub mod report;
pub mod upstream;
