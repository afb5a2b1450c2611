//! The engine of the running config, one per loaded config: the query API,
//! rules, metric checks and rollouts hold this handle and read the current
//! engine per query, so a reload that changes `[query]` limits (or the
//! evaluation interval, the default subquery step) changes them for all.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Engine;

/// A swappable [`Engine`]; clones share it.
#[derive(Clone, Debug)]
pub struct SharedEngine(Arc<ArcSwap<Engine>>);

impl SharedEngine {
    pub fn new(engine: Engine) -> SharedEngine {
        SharedEngine(Arc::new(ArcSwap::from_pointee(engine)))
    }

    /// The current engine (queries keep the one they started with).
    pub fn get(&self) -> Arc<Engine> {
        self.0.load_full()
    }

    /// Installs the engine of a newly loaded config.
    pub fn set(&self, engine: Engine) {
        self.0.store(Arc::new(engine));
    }
}

impl Default for SharedEngine {
    fn default() -> SharedEngine {
        SharedEngine::new(Engine::default())
    }
}
