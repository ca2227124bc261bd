//! Progress bars for long steps, on standard error (hidden when it is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` items, or a spinner with a count when the total is unknown.
pub fn bar(message: &str, total: Option<u64>) -> ProgressBar {
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
    bar
}
