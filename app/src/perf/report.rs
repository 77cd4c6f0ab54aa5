//! Result tables and JSON.

use super::hist::Histogram;
use super::worker::Stats;
use serde_json::{json, Value};

pub struct Line {
    pub name: String,
    pub iops: f64,
    pub mibs: f64,
    pub hist: Histogram,
    pub errors: u64,
    pub miscompares: u64,
}

impl Line {
    pub fn new(name: String, st: &Stats, secs: f64, io_size: usize) -> Line {
        let iops = st.ios as f64 / secs.max(1e-9);
        let mut hist = Histogram::default();
        hist.merge(&st.hist);
        Line {
            name,
            iops,
            mibs: iops * io_size as f64 / (1 << 20) as f64,
            hist,
            errors: st.errors,
            miscompares: st.miscompares,
        }
    }

    pub fn json(&self) -> Value {
        let us = |ns: u64| ns as f64 / 1000.0;
        json!({
            "name": self.name,
            "iops": self.iops,
            "mib_per_s": self.mibs,
            "ios": self.hist.count(),
            "errors": self.errors,
            "miscompares": self.miscompares,
            "latency_us": {
                "avg": self.hist.mean() / 1000.0,
                "min": us(self.hist.min()),
                "p50": us(self.hist.percentile(50.0)),
                "p99": us(self.hist.percentile(99.0)),
                "p99_9": us(self.hist.percentile(99.9)),
                "max": us(self.hist.max()),
            }
        })
    }
}

pub fn print_table(title: &str, lines: &[Line], total: &Line) {
    println!("{title}");
    println!(
        "{:<28} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "IOPS", "MiB/s", "avg(us)", "p50", "p99", "p99.9", "max"
    );
    let row = |l: &Line| {
        let us = |ns: u64| ns as f64 / 1000.0;
        println!(
            "{:<28} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            l.name,
            l.iops,
            l.mibs,
            l.hist.mean() / 1000.0,
            us(l.hist.percentile(50.0)),
            us(l.hist.percentile(99.0)),
            us(l.hist.percentile(99.9)),
            us(l.hist.max())
        );
        if l.errors > 0 || l.miscompares > 0 {
            println!("{:<28} errors {} miscompares {}", "", l.errors, l.miscompares);
        }
    };
    for l in lines {
        row(l);
    }
    if lines.len() > 1 {
        println!("{}", "-".repeat(100));
    }
    row(total);
}
