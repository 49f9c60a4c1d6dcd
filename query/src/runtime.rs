//! Where queries run: their own threads, at a lower CPU priority than
//! ingest, behind a limit on how many run at once.
//!
//! DataFusion keeps every core busy while a query lasts. On the runtime that
//! also serves the receivers, a few heavy queries would delay exports until
//! SDKs time out and drop spans. On threads of their own with a higher nice
//! value, queries take the CPU ingest leaves over, and the kernel hands it
//! back to ingest whenever it needs it.
//!
//! A query is stopped by dropping its task, which takes effect when the
//! task next yields. DataFusion yields when its sources run out of tokio's
//! budget, but a join can make millions of rows from a few input batches
//! without polling a source; [`YieldingJoins`] makes such operators yield
//! too, so a cross join past its timeout stops at once.

use std::future::Future;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

#[cfg(target_os = "linux")]
/// Nice value of query threads: ingest (nice 0) gets about 9 times their CPU
/// share when both want it.
const QUERY_NICE: i32 = 10;

#[derive(Debug)]
pub(crate) struct QueryRuntime {
    /// `None` only while dropping (a runtime may not be dropped inside another).
    runtime: Option<Runtime>,
    permits: Arc<Semaphore>,
}

impl QueryRuntime {
    pub(crate) fn new(concurrency: usize) -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("spanlake-query")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(Self { runtime: Some(runtime), permits: Arc::new(Semaphore::new(concurrency.max(1))) })
    }

    /// Waits for a turn (queries beyond the limit queue), then runs `query`
    /// on the query threads. Dropping the returned future cancels the query.
    /// `None` if the runtime shut down first.
    pub(crate) async fn run<T: Send + 'static>(&self, query: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let permit: OwnedSemaphorePermit =
            Arc::clone(&self.permits).acquire_owned().await.expect("the query semaphore is never closed");
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        let task = AbortOnDrop(runtime.spawn(async move {
            let _permit = permit;
            query.await
        }));
        match task.await {
            Ok(value) => Some(value),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => None,
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A task handle that aborts the task when dropped: a query whose caller
/// gave up (timeout, cancel, closed connection) stops using CPU.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Operators whose output can dwarf their input.
const MULTIPLIERS: [&str; 7] = [
    "CrossJoinExec",
    "NestedLoopJoinExec",
    "HashJoinExec",
    "SortMergeJoinExec",
    "SymmetricHashJoinExec",
    "RecursiveQueryExec",
    "UnnestExec",
];

/// Puts a `CooperativeExec` above every operator in [`MULTIPLIERS`]: each
/// batch it makes then spends tokio budget, and the task yields.
#[derive(Debug)]
pub(crate) struct YieldingJoins;

impl PhysicalOptimizerRule for YieldingJoins {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(if MULTIPLIERS.contains(&node.name()) {
                Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>)
            } else {
                Transformed::no(node)
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spanlake_yielding_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux, PRIO_PROCESS with id 0 sets the calling thread's nice value.
    // SAFETY: setpriority only reads its integer arguments.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, QUERY_NICE) };
    if result != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "query threads keep the normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
