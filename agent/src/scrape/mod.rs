//! Scraping: jobs and targets from config and discovery, relabeling, and one
//! loop per target appending to the store (Prometheus' `scrape/` package).

pub mod manager;
pub mod scrape_loop;
pub mod target;
pub mod trace;

pub use manager::{ScrapeManager, TargetStatus};
pub use target::{Job, Target};
