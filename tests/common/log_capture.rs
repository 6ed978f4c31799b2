//! Capturing everything `tracing` logs while a test runs, in a binary shared with other tests.
//!
//! A global subscriber can be set once per process, and several test files now share one. So
//! the subscriber is installed once ([`OnceLock`]) and is the only one: it formats every event
//! and span (TRACE and up, every target, span lifecycle included) but only on a thread that is
//! capturing, into that thread's own buffer. Other tests, on their own threads, are neither
//! captured nor slowed by formatting, and captures running at the same time never see each
//! other's lines.
//!
//! A capture sees the events of its own thread: a test that captures runs on a
//! `current_thread` Tokio runtime, where its tasks (keycard's spawned ones included) all run.
//! Scoped (thread-local) subscribers are not used: they interact badly with `tracing`'s
//! per-callsite interest cache across threads. Here every callsite's interest is "sometimes" and
//! the filter decides per event.

use std::{
    cell::RefCell,
    io,
    marker::PhantomData,
    sync::{Arc, OnceLock},
};

use parking_lot::Mutex;
use tracing::{Metadata, level_filters::LevelFilter, subscriber::Interest};
use tracing_subscriber::{
    Layer,
    fmt::format::FmtSpan,
    layer::{Context, Filter, SubscriberExt},
};

/// Everything logged on one capturing thread.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

thread_local! {
    /// The capture of this thread, if it is capturing.
    static CURRENT: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// This thread's capture (none once the thread is being torn down).
fn current() -> Option<Captured> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// Enables everything, on capturing threads only; decided per event (never cached).
struct CapturingThread;

impl<S> Filter<S> for CapturingThread {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        CURRENT.try_with(|c| c.borrow().is_some()).unwrap_or(false)
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}

/// Installs the process's one global subscriber, on first use.
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_span_events(FmtSpan::FULL)
            .with_target(true)
            .with_writer(|| current().unwrap_or_default())
            .with_filter(CapturingThread);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other global subscriber in this test binary");
    });
}

/// Captures everything logged on this thread (TRACE, every target, with span lifecycle events,
/// so that span fields are written even when no event fires inside them) until the guard drops.
/// Each capture starts empty.
pub fn capture() -> (Captured, CaptureGuard) {
    install();
    let captured = Captured::default();
    CURRENT.with(|c| *c.borrow_mut() = Some(captured.clone()));
    // Callsites first hit while the subscriber was being installed (by tests on other threads)
    // may have cached a stale interest: recompute them all.
    tracing::callsite::rebuild_interest_cache();
    (captured, CaptureGuard(PhantomData))
}

/// Ends this thread's capture when dropped; stays on the capturing thread.
pub struct CaptureGuard(PhantomData<*const ()>);

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}
