//! What a job's relabeling does to one discovered label set, step by step,
//! for `wasmon relabel test` and `/api/v1/targets/relabel_steps`: built
//! from the pieces of [`Target::populate`] so it cannot disagree with it.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::target::{finish, with_job_defaults, Job, Target, TargetError};
use crate::model::labels::Labels;
use crate::model::relabel::{self, label_map};

/// A discovered label set's way to a target: see [`Target::trace`].
#[derive(Debug, Clone)]
pub struct TargetTrace {
    /// The job (scrape pool) whose rules were applied.
    pub pool: String,
    /// As discovery gave it.
    pub discovered: Labels,
    /// The rules' steps; its `input` is `discovered` with the job's
    /// defaults (`job`, `__scheme__`, `__metrics_path__`,
    /// `__scrape_interval__`, `__scrape_timeout__`, `__param_*`).
    pub relabel: relabel::Trace,
    /// None when a rule dropped the set; else the target, or why the
    /// labels left are no target.
    pub target: Option<Result<Target, TargetError>>,
}

impl Target {
    /// What [`Target::populate`] does to one discovered label set, step by
    /// step (the same code): the job's defaults, each relabel rule, and
    /// the target (or why there is none).
    pub fn trace(job: &Job, discovered: Labels) -> TargetTrace {
        let mut lb = with_job_defaults(job, &discovered);
        let relabel = relabel::trace(&mut lb, &job.relabel);
        let target = match relabel.dropped_by {
            Some(_) => None,
            None => Some(finish(lb, relabel.input.clone())),
        };
        TargetTrace {
            pool: job.name.clone(),
            discovered,
            relabel,
            target,
        }
    }
}

/// Labels as a JSON object (the field's serializer).
struct LabelMap<'a>(&'a Labels);

impl Serialize for LabelMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        label_map(self.0, s)
    }
}

/// Prometheus' `{"steps": [{"rule", "output", "keep"}]}` (3.8's
/// relabel_steps), and what Prometheus leaves to its UI: the labels the
/// rules saw (`input`: the discovered ones with the job's defaults), the
/// verdict (`keep`, `droppedBy`), and the target made of the labels left
/// (`target`: its labels and `scrapeUrl`) or why there is none (`error`).
impl Serialize for TargetTrace {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("steps", &self.relabel.steps)?;
        m.serialize_entry("scrapePool", &self.pool)?;
        m.serialize_entry("discoveredLabels", &LabelMap(&self.discovered))?;
        m.serialize_entry("input", &LabelMap(&self.relabel.input))?;
        m.serialize_entry("keep", &matches!(self.target, Some(Ok(_))))?;
        m.serialize_entry("droppedBy", &self.relabel.dropped_by)?;
        match &self.target {
            Some(Ok(t)) => {
                let mut target = BTreeMap::new();
                target.insert("labels", serde_json::json!(LabelMap(&t.labels)));
                target.insert("scrapeUrl", serde_json::json!(t.url));
                m.serialize_entry("target", &target)?;
                m.serialize_entry("error", &None::<String>)?;
            }
            Some(Err(e)) => {
                m.serialize_entry("target", &None::<()>)?;
                m.serialize_entry("error", &e.to_string())?;
            }
            None => {
                m.serialize_entry("target", &None::<()>)?;
                m.serialize_entry("error", &None::<String>)?;
            }
        }
        m.end()
    }
}

/// A label set as Prometheus' API takes it: a JSON object of strings.
pub fn labels_from_json(s: &str) -> Result<Labels, serde_json::Error> {
    let m: BTreeMap<String, String> = serde_json::from_str(s)?;
    Ok(Labels::from_pairs(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::target::tests::job;
    use crate::scrape::target::ADDRESS_LABEL;

    /// The trace is the real relabeling, step by step: over many
    /// discovered sets (kept, dropped by different rules, left without an
    /// address) it ends where `populate` does.
    #[test]
    fn trace_agrees_with_populate() {
        let j = job(
            "params = { module = [\"m\"] }\n\
             [[scrape_configs.relabel_configs]]\nsource_labels = [\"__meta_scrape\"]\nregex = \"true\"\naction = \"keep\"\n\
             [[scrape_configs.relabel_configs]]\nsource_labels = [\"__meta_env\"]\nregex = \"dev|test\"\naction = \"drop\"\n\
             [[scrape_configs.relabel_configs]]\nsource_labels = [\"__address__\", \"__meta_port\"]\nregex = \"([^:]+)(?::\\\\d+)?;(\\\\d+)\"\nreplacement = \"$1:$2\"\ntarget_label = \"__address__\"\n\
             [[scrape_configs.relabel_configs]]\nsource_labels = [\"__meta_path\"]\nregex = \"(.+)\"\ntarget_label = \"__metrics_path__\"\n\
             [[scrape_configs.relabel_configs]]\naction = \"labelmap\"\nregex = \"__meta_label_(.+)\"\n\
             [[scrape_configs.relabel_configs]]\nsource_labels = [\"__address__\"]\nmodulus = 4\ntarget_label = \"shard\"\naction = \"hashmod\"\n\
             [[scrape_configs.relabel_configs]]\nsource_labels = [\"__meta_gone\"]\nregex = \"yes\"\ntarget_label = \"__address__\"\nreplacement = \"\"\n",
        );
        let (mut kept, mut dropped, mut errors) = (0, 0, 0);
        for i in 0..600u32 {
            let mut pairs = vec![(
                ADDRESS_LABEL.to_string(),
                format!("10.0.{}.{}:80", i / 250, i % 250),
            )];
            let pick = |n: u32, of: &[&str]| of[(i / n) as usize % of.len()].to_string();
            pairs.push((
                "__meta_scrape".into(),
                pick(1, &["true", "true", "false", ""]),
            ));
            pairs.push((
                "__meta_env".into(),
                pick(4, &["prod", "dev", "", "staging", "test"]),
            ));
            pairs.push(("__meta_port".into(), pick(3, &["", "9100", "8080"])));
            pairs.push(("__meta_path".into(), pick(7, &["", "/m", "/x/y"])));
            pairs.push(("__meta_label_app".into(), pick(5, &["", "web", "db"])));
            pairs.push(("__meta_gone".into(), pick(11, &["", "", "yes"])));
            let d = Labels::from_pairs(pairs);
            let t = Target::trace(&j, d.clone());
            let p = Target::populate(&j, d.clone());
            assert_eq!(t.target.clone().transpose(), p, "{d}");
            assert_eq!(t.discovered, d);
            assert_eq!(t.relabel.steps.len(), j.relabel.len());
            match &p {
                Ok(Some(target)) => {
                    kept += 1;
                    assert_eq!(target.discovered, t.relabel.input);
                }
                Ok(None) => {
                    dropped += 1;
                    let by = t.relabel.dropped_by.expect("dropped by a rule");
                    assert!(t.relabel.steps[..by].iter().all(|s| s.keep));
                    assert!(t.relabel.steps[by..]
                        .iter()
                        .all(|s| !s.keep && s.output.is_empty()));
                }
                Err(_) => errors += 1,
            }
        }
        // The sets cover every outcome.
        assert!(
            kept > 50 && dropped > 50 && errors > 5,
            "{kept} {dropped} {errors}"
        );
    }
}
