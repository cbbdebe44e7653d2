//! A thread of its own for each connection, as PostgreSQL gives each a process.
//!
//! Why: with many clients on few cores, a shared pool of async workers multiplexing
//! every socket spends its time waking and parking (the CPU goes idle between
//! requests, and each wake-up of an idle CPU costs an interrupt). Measured with pgbench,
//! 16 clients on 2 cores, `SELECT 1` prepared: 88,000 queries/s on the shared pool,
//! 167,000 with a thread per connection; PostgreSQL 15 159,000 on the same machine.
//!
//! The thread runs a single-threaded runtime that owns the connection's socket, so the
//! protocol, the fast paths (constants, key lookups, small inserts) and the statement
//! limits run there. A query's parallel work does not: the connection's future is polled
//! with the shared runtime as the current one ([`OnRuntime`]), so the tasks DataFusion
//! spawns for its partitions run on the shared workers, as before.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::Handle;

/// Runs `serve` on a new thread named `name`, with a single-threaded runtime: `serve` is
/// called inside it, so the sockets it registers (from `socket`) belong to the thread;
/// the tasks its future spawns go to `shared`. Fails only when the thread cannot be
/// created.
pub fn spawn<S, F>(
    name: String,
    stack_bytes: usize,
    socket: std::net::TcpStream,
    shared: Handle,
    serve: S,
) -> std::io::Result<()>
where
    S: FnOnce(std::net::TcpStream) -> F + Send + 'static,
    F: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name)
        .stack_size(stack_bytes)
        .spawn(move || {
            rankql_udfs::blocking::mark_dedicated_thread();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::warn!("connection dropped: cannot start its runtime: {error}");
                    return;
                }
            };
            runtime.block_on(async move {
                // `serve` is called here, so the sockets it registers belong to this
                // thread's runtime: the thread sleeps on its own socket and the client's
                // write wakes it directly.
                let served = serve(socket);
                OnRuntime {
                    handle: shared,
                    inner: Box::pin(served),
                }
                .await
            });
        })
        .map(|_| ())
}

/// Polls `inner` with `handle`'s runtime as the current one, so that what `inner`
/// spawns (DataFusion's partition tasks, blocking file work) runs on that runtime.
struct OnRuntime<F> {
    handle: Handle,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for OnRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _current = this.handle.enter();
        this.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks spawned by a connection run on the shared runtime's workers, not on the
    /// connection's thread.
    #[test]
    fn spawned_tasks_run_on_the_shared_runtime() {
        let shared = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("shared-worker")
            .build()
            .expect("runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let client = std::net::TcpStream::connect(address).expect("connect");
        let (socket, _) = listener.accept().expect("accept");
        socket.set_nonblocking(true).expect("non-blocking");
        let (report, reported) = std::sync::mpsc::channel();
        spawn(
            "test-connection".into(),
            1 << 20,
            socket,
            shared.handle().clone(),
            move |_socket| async move {
                let spawned_on =
                    tokio::spawn(async { std::thread::current().name().map(str::to_string) })
                        .await
                        .expect("task runs");
                let served_on = std::thread::current().name().map(str::to_string);
                report.send((served_on, spawned_on)).expect("test waits");
            },
        )
        .expect("thread starts");
        let (served_on, spawned_on) = reported.recv().expect("connection reports");
        assert_eq!(served_on.as_deref(), Some("test-connection"));
        assert_eq!(spawned_on.as_deref(), Some("shared-worker"));
        drop(client);
    }
}
