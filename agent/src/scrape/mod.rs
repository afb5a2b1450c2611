//! Scraping: jobs and targets from config and discovery, relabeling, and one
//! loop per target appending to the store (Prometheus' `scrape/` package).

pub mod append;
pub mod discovery;
pub mod target;
// manager and scrape_loop are enabled once textparse lands.

pub use append::{Appendable, AppendRejection, MemoryStore, SampleAppender};
pub use target::{Job, Target};
