//! Progress of the long commands (export, import): a bar on a terminal,
//! a plain line every few seconds otherwise (logs, CI).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug)]
pub(crate) struct Progress {
    what: &'static str,
    count: u64,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// Counts `what` (e.g. "traces"), on stderr.
    pub(crate) fn new(what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {pos} {msg} ({per_sec}, {elapsed})").expect("a template"),
            );
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { what, count: 0, bar, last_line: Instant::now() }
    }

    pub(crate) fn add(&mut self, n: u64) {
        self.count += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                eprintln!("{} {}", self.count, self.what);
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    /// Ends the bar; returns the count.
    pub(crate) fn finish(self) -> u64 {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        self.count
    }
}
