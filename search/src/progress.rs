//! Progress for long steps, on standard error: a bar on a terminal; elsewhere (a log file, CI)
//! a line when each step starts and one when it ends, so that a long search is never silent.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    /// Off a terminal: the step's name and when it started.
    plain: Option<(String, Instant)>,
}

/// A bar over `total` items, or a spinner with a count when the total is unknown.
pub fn bar(message: &str, total: Option<u64>) -> Progress {
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg:>24} {spinner} {pos} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(message.to_owned());
    let plain = (!std::io::stderr().is_terminal()).then(|| {
        match total {
            Some(n) => eprintln!("{message}: {n} to do"),
            None => eprintln!("{message}: started"),
        }
        (message.to_owned(), Instant::now())
    });
    Progress { bar, plain }
}

impl Progress {
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn enable_steady_tick(&self, interval: Duration) {
        self.bar.enable_steady_tick(interval);
    }

    pub fn finish_and_clear(&self) {
        // Finishing moves the bar to its end: what was done is read first.
        let done = self.bar.position();
        self.bar.finish_and_clear();
        if let Some((message, start)) = &self.plain {
            eprintln!(
                "{message}: {done} done in {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
    }
}
