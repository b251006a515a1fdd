//! Figures: each workload's result beside its baseline and target, and the report printed
//! as a table and written as JSON.

use serde_json::{json, Value};

use crate::baseline::Baselines;

/// One workload figure, as the table and the JSON show it.
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub baseline_name: &'static str,
    pub baseline: Option<f64>,
    /// Whether a larger value is better (rates) or a smaller one (seconds).
    higher_is_better: bool,
    /// Issue 5's target, in words, and whether this run meets it.
    pub target: Option<(&'static str, bool)>,
    pub extra: serde_json::Map<String, Value>,
}

impl Figure {
    pub fn rate(
        name: &'static str,
        value: f64,
        unit: &'static str,
        baseline_name: &'static str,
        baseline: Option<f64>,
    ) -> Self {
        Figure {
            name,
            value,
            unit,
            baseline_name,
            baseline,
            higher_is_better: true,
            target: None,
            extra: Default::default(),
        }
    }

    pub fn seconds(
        name: &'static str,
        value: f64,
        baseline_name: &'static str,
        baseline: f64,
    ) -> Self {
        Figure {
            higher_is_better: false,
            ..Figure::rate(name, value, "s", baseline_name, Some(baseline))
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// Records the target; `met` sees the figure (its ratio) to judge it.
    pub fn target(mut self, text: &'static str, met: impl FnOnce(&Figure) -> bool) -> Self {
        let met = met(&self);
        self.target = Some((text, met));
        self
    }

    /// Value over baseline for rates, baseline over value for times: above 1 is better.
    pub fn ratio(&self) -> Option<f64> {
        let b = self.baseline?;
        Some(if self.higher_is_better {
            self.value / b
        } else {
            b / self.value
        })
    }

    pub fn at_least(&self, ratio: f64) -> bool {
        self.ratio().is_some_and(|r| r >= ratio)
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio(),
            "target": self.target.map(|(t, _)| t),
            "target_met": self.target.map(|(_, m)| m),
        });
        for (k, x) in &self.extra {
            v[k] = x.clone();
        }
        v
    }
}

/// What a run measured: the figures in the order they are printed, the baselines (the
/// faster of two rounds) and the run's circumstances.
pub struct Report {
    pub figures: Vec<Figure>,
    pub baselines: Baselines,
    pub run: Value,
}

impl Report {
    /// The table on standard output: the figures, then the baselines.
    pub fn print(&self, url: &str, quick: bool) {
        println!(
            "\nworkloads against {url}{}  (load average {} -> {})\n",
            if quick { " (--quick: counts / 10)" } else { "" },
            self.run["load_average_before"].as_str().unwrap_or(""),
            self.run["load_average_after"].as_str().unwrap_or(""),
        );
        println!(
            "{:<26} {:>11} {:<10} {:>11} {:<21} {:>7}  {:<5} {:<38} extra",
            "workload", "value", "unit", "baseline", "baseline name", "ratio", "met", "target"
        );
        for f in &self.figures {
            let extra = f
                .extra
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            let (target, met) = match f.target {
                Some((t, true)) => (t, "yes"),
                Some((t, false)) => (t, "NO"),
                None => ("-", "-"),
            };
            println!(
                "{:<26} {:>11} {:<10} {:>11} {:<21} {:>7}  {:<5} {:<38} {extra}",
                f.name,
                figure(f.value),
                f.unit,
                f.baseline.map_or("-".into(), figure),
                f.baseline_name,
                f.ratio().map_or("-".into(), |r| format!("{r:.2}")),
                met,
                target,
            );
        }
        if self.baselines.named().iter().all(|(_, v)| v.is_none()) {
            return; // the scale workloads, or memory://: no baselines
        }
        println!("\nbaselines (raw sqlx, rows/s, the faster of two rounds):");
        for (name, v) in self.baselines.named() {
            println!("  {name:<10} {}", v.map_or("-".into(), figure));
        }
    }

    /// The JSON document `--json` writes.
    pub fn json(&self, url: &str) -> Value {
        json!({
            "database": url,
            "run": self.run,
            "workloads": self.figures.iter().map(Figure::json).collect::<Vec<_>>(),
            "baselines": self
                .baselines
                .named()
                .iter()
                .map(|(name, v)| json!({ "name": name, "value": v, "unit": "rows/s" }))
                .collect::<Vec<_>>(),
        })
    }
}

/// `v` to three decimals, for the JSON.
pub fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

/// A figure with as many decimals as it needs: 4 significant digits for small ones.
pub fn figure(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}
