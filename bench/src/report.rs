//! Turning what the runs recorded into the numbers of the report, and the report itself: one
//! markdown table (a row per run) on stdout, the ceiling and the API rate below it, then notes.
//!
//! Every time is measured at the fake X against the herd's due time T. Lateness statistics are
//! over the herd posts that arrived (first arrival of each text); posts that never arrived are
//! counted as lost instead, so a run that stalls shows a small, honest lateness and a large
//! "lost" rather than a made-up number.

use std::{collections::HashMap, fmt::Write as _};

use chrono::{DateTime, Utc};

use crate::{
    api_rate::{ApiRate, IN_FLIGHT},
    ceiling::Ceiling,
    database::{OTHER_TEXT, is_herd_text},
    fake_x::Received,
    herd::{End, Outcome, seconds},
    options::Options,
};

/// Statistics of one run's arrivals at the fake X.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Distinct herd posts that arrived.
    pub arrived: u64,
    /// Herd posts per second: `arrived / (last arrival − T)`.
    pub rate: Option<f64>,
    /// First herd arrival − T, seconds.
    pub first: Option<f64>,
    /// Lateness percentiles and maximum (arrival − T, seconds).
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Arrivals (herd or other, first or repeated) before T.
    pub early: u64,
    /// Texts that arrived more than once.
    pub duplicates: u64,
    /// The other user's post: arrival − T, seconds.
    pub other: Option<f64>,
}

impl Stats {
    /// Computes the statistics of `received` against due time `due`.
    pub fn of(received: &[Received], due: DateTime<Utc>) -> Self {
        let mut first: HashMap<&str, DateTime<Utc>> = HashMap::with_capacity(received.len());
        let mut times: HashMap<&str, u64> = HashMap::with_capacity(received.len());
        let mut early = 0;
        for r in received {
            if r.at < due {
                early += 1;
            }
            *times.entry(&r.text).or_default() += 1;
            first.entry(&r.text).and_modify(|at| *at = (*at).min(r.at)).or_insert(r.at);
        }
        let mut lateness: Vec<f64> =
            first.iter().filter(|(text, _)| is_herd_text(text)).map(|(_, at)| seconds(*at - due)).collect();
        lateness.sort_by(f64::total_cmp);
        let arrived = lateness.len() as u64;
        let last = lateness.last().copied();
        Self {
            arrived,
            rate: last.filter(|last| *last > 0.0).map(|last| arrived as f64 / last),
            first: lateness.first().copied(),
            p50: percentile(&lateness, 0.50),
            p99: percentile(&lateness, 0.99),
            max: last,
            early,
            duplicates: times.values().filter(|n| **n > 1).count() as u64,
            other: first.get(OTHER_TEXT).map(|at| seconds(*at - due)),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

fn end_label(end: &End) -> String {
    match end {
        End::Done => "done".into(),
        End::Stalled(after) => format!("stalled (no progress for {} s)", after.as_secs()),
        End::Timeout => "timeout".into(),
        End::WorkersExited => "workers exited".into(),
        End::Skipped(_) => "skipped".into(),
        End::Failed(_) => "failed".into(),
    }
}

/// The machine the numbers come from: cores and the load average before and after the runs
/// (the machine may be shared, and a busy one lowers every number).
#[derive(Debug, Clone)]
pub struct Machine {
    /// Available cores.
    pub cores: usize,
    /// `/proc/loadavg`'s first three fields when the bench started.
    pub load_before: String,
    /// The same when it ended.
    pub load_after: String,
}

impl Machine {
    /// Reads the load average now.
    pub fn load() -> String {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    }
}

/// The whole report.
pub fn render(options: &Options, machine: &Machine, ceiling: &Ceiling, api: &ApiRate, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let ceiling_rate = ceiling.rate();
    let _ = writeln!(
        out,
        "\n## herd: {} users, {} posts per herd, scheduled {}, binaries from {}\n",
        options.users,
        options.posts,
        if options.via_api { "through the API (--via-api)" } else { "with SQL (due_at)" },
        options.bin_dir.display()
    );
    let _ = writeln!(
        out,
        "| workers | posts | end | posts/s | ÷ ceiling | first post s | lateness p50 s | p99 s | max s | early | \
         duplicates | lost | peak worker RSS MiB | Redis peak keys | other user's lateness s |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(15));
    let mut notes: Vec<String> = Vec::new();
    for outcome in outcomes {
        let stats = outcome.due.map(|due| Stats::of(&outcome.received, due)).unwrap_or_default();
        let ratio = stats.rate.zip(ceiling_rate).map(|(rate, ceiling)| rate / ceiling);
        let lost = outcome.lost.as_ref().map_or_else(|| "–".into(), |(n, _)| n.to_string());
        let other = match (stats.other, &outcome.lost) {
            (Some(late), _) => format!("{late:.2}"),
            (None, Some(_)) => "never".into(),
            (None, None) => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            outcome.spec.workers,
            outcome.spec.posts,
            end_label(&outcome.end),
            opt(stats.rate, 0),
            opt(ratio, 2),
            opt(stats.first, 2),
            opt(stats.p50, 2),
            opt(stats.p99, 2),
            opt(stats.max, 2),
            stats.early,
            stats.duplicates,
            lost,
            outcome.rss_peak_kib as f64 / 1024.0,
            outcome.keys_peak,
            other
        );
        let run = format!("{} workers, {} posts", outcome.spec.workers, outcome.spec.posts);
        match &outcome.end {
            End::Skipped(why) | End::Failed(why) => notes.push(format!("{run}: {why}")),
            _ => {}
        }
        if let Some((lost, statuses)) = &outcome.lost
            && *lost > 0
        {
            let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{n} {s}")).collect();
            notes.push(format!("{run}: not posted at the end: {}", statuses.join(", ")));
        }
        if stats.arrived > 0 && outcome.lost.is_some() {
            let lost = outcome.lost.as_ref().map_or(0, |(n, _)| *n);
            if stats.arrived + lost != outcome.spec.posts {
                notes.push(format!(
                    "{run}: {} distinct herd posts reached the fake X, {lost} are not `posted`",
                    stats.arrived
                ));
            }
        }
        notes.extend(outcome.notes.iter().map(|note| format!("{run}: {note}")));
    }
    out.push('\n');
    match ceiling {
        Ceiling::Measured(tps) => {
            let _ = writeln!(
                out,
                "- ceiling posts/s: {tps:.0} (pgbench, 8 clients, {} s: claim + result of one random post of {})",
                options.pgbench_secs, options.posts
            );
        }
        Ceiling::Skipped(why) => {
            let _ = writeln!(out, "- ceiling posts/s: not measured ({why})");
        }
    }
    match api {
        ApiRate::Measured(scheduled) => {
            let ratio = ceiling_rate.map_or_else(String::new, |c| format!(", {:.2} × ceiling", scheduled.rate() / c));
            let _ = writeln!(
                out,
                "- API scheduling rate: {:.0} posts/s{ratio} ({} accepted, {} failed, {IN_FLIGHT} in flight, {:.1} s)",
                scheduled.rate(),
                scheduled.accepted,
                scheduled.failed,
                scheduled.elapsed.as_secs_f64()
            );
        }
        ApiRate::Skipped(why) => {
            let _ = writeln!(out, "- API scheduling rate: not measured ({why})");
        }
    }
    let _ = writeln!(
        out,
        "- machine: {} cores, load average {} before, {} after",
        machine.cores, machine.load_before, machine.load_after
    );
    let _ = writeln!(out, "- logs: {}", options.log_dir.display());
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, due: DateTime<Utc>) -> DateTime<Utc> {
        due + chrono::Duration::milliseconds(ms)
    }

    #[test]
    fn stats_measure_against_the_due_time() {
        let due = Utc::now();
        let received = vec![
            Received { at: at(-10, due), text: "herd bench-0000001".into() },
            Received { at: at(500, due), text: "herd bench-0000002".into() },
            Received { at: at(1_000, due), text: "herd bench-0000002".into() },
            Received { at: at(2_000, due), text: "herd bench-0000003".into() },
            Received { at: at(250, due), text: OTHER_TEXT.into() },
        ];
        let stats = Stats::of(&received, due);
        assert_eq!(stats.arrived, 3);
        assert_eq!((stats.early, stats.duplicates), (1, 1));
        assert_eq!(stats.rate, Some(1.5));
        assert_eq!((stats.first, stats.p50, stats.max), (Some(-0.01), Some(0.5), Some(2.0)));
        assert_eq!(stats.other, Some(0.25));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
