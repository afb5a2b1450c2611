//! Scraping: targets, relabeling, the scrape loop.
