//! Benchmarks and, later, the load generator. `fixtures` builds the realistic catalogs and event
//! streams the benches rate, outside the timed loops.

pub mod cpu;
pub mod fixtures;
pub mod load;
