//! Polls a future to completion on this thread, without a runtime: for stacks that never
//! wait on anything external, so that no runtime is measured. The tests, the benchmarks,
//! the fuzz targets and the peer benchmark include this one file (`#[path]`).

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

/// Polls `future` until it is ready; a future that wakes itself between states (as some
/// layers do) is polled again at once.
pub fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}
