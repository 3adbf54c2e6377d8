//! Progress bars on stderr (indicatif), hidden for `--json` or when stderr is not a
//! terminal. The library sees only the `Progress` trait.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

const BYTES_BAR: &str =
    "{spinner} {msg:24} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})";
const COUNT_BAR: &str = "{spinner} {msg:24} [{bar:40}] {pos}/{len} ({per_sec}, {eta})";
const SPINNER: &str = "{spinner} {msg:24} {pos} ({per_sec})";

/// An indicatif bar behind the `Progress` trait.
pub struct Bar {
    bar: ProgressBar,
    template: &'static str,
}

impl Bar {
    fn new(json: bool, template: &'static str) -> Bar {
        let bar = if json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
        };
        let b = Bar { bar, template };
        b.style(template);
        b
    }

    fn style(&self, template: &str) {
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
    }

    /// A bar counting bytes.
    pub fn bytes(json: bool) -> Bar {
        Bar::new(json, BYTES_BAR)
    }

    /// A bar counting items.
    pub fn count(json: bool) -> Bar {
        Bar::new(json, COUNT_BAR)
    }

    pub fn start_count(&self, message: &str, total: u64) {
        self.start(message, Some(total));
    }

    pub fn set(&self, n: u64) {
        self.bar.set_position(n);
    }

    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&self, message: &str, total: Option<u64>) {
        match total {
            Some(t) => {
                self.style(self.template);
                self.bar.set_length(t);
            }
            None => self.style(SPINNER),
        }
        self.bar.set_position(0);
        self.bar.set_message(message.to_string());
    }

    fn position(&self, done: u64) {
        self.bar.set_position(done);
    }

    fn message(&self, message: &str) {
        self.bar.set_message(message.to_string());
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
