//! What the benchmarks share: a field of the kernel's `/proc/self/status`, and waiting for a
//! pipeline's end.

use anyhow::{Context, Result, bail};
use gst::prelude::*;

/// `field` (such as `VmRSS` or `VmHWM`) of this process, in kB; 0 when unreadable.
pub fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes the C allocator has handed out and not taken back, in kB (glibc's `mallinfo2`):
/// unlike the resident size, it does not count memory freed but kept by the allocator, so a
/// leak shows in it and fragmentation does not.
/// 0 where the C library is not glibc.
#[allow(dead_code)] // not every benchmark reads it
pub fn heap_in_use_kb() -> u64 {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let info = unsafe { libc::mallinfo2() };
        ((info.uordblks + info.hblkhd) / 1024) as u64
    }
    #[cfg(not(target_env = "gnu"))]
    0
}

/// Waits for `pipeline` to reach its end; an ERROR on its bus is the error returned.
pub fn wait_for_end(pipeline: &gst::Element) -> Result<()> {
    let msg = pipeline
        .bus()
        .context("no bus")?
        .timed_pop_filtered(
            gst::ClockTime::NONE,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .context("no end of stream")?;
    if let gst::MessageView::Error(err) = msg.view() {
        bail!("{}", err.error());
    }
    Ok(())
}
