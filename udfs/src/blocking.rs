//! Long CPU work (model inference) inside a function, without stalling other clients.
//!
//! On a worker of tokio's multi-threaded runtime, other tasks wait while a function
//! computes, so the work is announced with `block_in_place` and the worker's other tasks
//! move on. A thread that serves one client only (rankql's connection threads, which run
//! a single-threaded runtime while the shared multi-threaded one is current for spawning)
//! may simply compute: nothing else waits on it, and `block_in_place` would panic there.

use std::cell::Cell;

use tokio::runtime::{Handle, RuntimeFlavor};

thread_local! {
    static DEDICATED: Cell<bool> = const { Cell::new(false) };
}

/// Declares the calling thread one that serves a single client, so long work runs on it
/// directly. Call it once, at the start of the thread.
pub fn mark_dedicated_thread() {
    DEDICATED.with(|dedicated| dedicated.set(true));
}

/// Runs `work`, letting the other tasks of a multi-threaded runtime's worker move to
/// another worker meanwhile.
pub fn run_blocking<T>(work: impl FnOnce() -> T) -> T {
    if DEDICATED.with(Cell::get) {
        return work();
    }
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dedicated thread inside a single-threaded runtime, with a multi-threaded one
    /// entered (as a connection thread runs), computes instead of panicking.
    #[test]
    fn a_dedicated_thread_with_a_multi_threaded_runtime_entered_computes() {
        let shared = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let handle = shared.handle().clone();
        let computed = std::thread::spawn(move || {
            mark_dedicated_thread();
            let own = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            own.block_on(async move {
                let _shared = handle.enter();
                run_blocking(|| 6 * 7)
            })
        })
        .join()
        .expect("no panic");
        assert_eq!(computed, 42);
    }

    /// On a multi-threaded runtime's worker the work runs too (through block_in_place).
    #[test]
    fn a_worker_of_a_multi_threaded_runtime_computes() {
        let shared = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let computed = shared.block_on(async {
            tokio::spawn(async { run_blocking(|| 6 * 7) })
                .await
                .expect("task")
        });
        assert_eq!(computed, 42);
    }
}
