//! A k-way merge of sorted record-batch streams, for compaction.
//!
//! Each input must be sorted by the sort columns; the output is too. Rows
//! are compared in Arrow's row format, and a heap picks the next one, so a
//! merge costs O(rows · log inputs) and holds one batch per input. With
//! `dedup`, a row equal to the one emitted before it in every sort column
//! is dropped and counted as a duplicate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
#[cfg(test)]
use futures::StreamExt;
use futures::TryStreamExt;
use futures::stream::BoxStream;

/// Rows per output batch.
const OUTPUT_ROWS: usize = 8192;

pub(crate) type BatchStream = BoxStream<'static, Result<RecordBatch, ArrowError>>;

/// One output batch, and how many duplicates were dropped making it.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) rows: RecordBatch,
    pub(crate) duplicates: usize,
}

struct Cursor {
    loaded: usize,
    rows: Rows,
    len: usize,
    pos: usize,
}

pub(crate) struct SortedMerge {
    schema: SchemaRef,
    sort_columns: Vec<usize>,
    converter: RowConverter,
    dedup: bool,
    inputs: Vec<BatchStream>,
    cursors: Vec<Option<Cursor>>,
    heap: BinaryHeap<Reverse<(OwnedRow, usize)>>,
    /// Batches that pending indices point into.
    loaded: Vec<RecordBatch>,
    out: Vec<(usize, usize)>,
    dups: usize,
    last: Option<OwnedRow>,
    started: bool,
}

impl std::fmt::Debug for SortedMerge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedMerge").field("inputs", &self.inputs.len()).finish_non_exhaustive()
    }
}

impl SortedMerge {
    pub(crate) fn new(
        schema: SchemaRef,
        sort_columns: &[&str],
        dedup: bool,
        inputs: Vec<BatchStream>,
    ) -> Result<Self, ArrowError> {
        let sort_columns: Vec<usize> = sort_columns.iter().map(|c| schema.index_of(c)).collect::<Result<_, _>>()?;
        let fields = sort_columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect();
        let cursors = inputs.iter().map(|_| None).collect();
        Ok(Self {
            schema,
            sort_columns,
            converter: RowConverter::new(fields)?,
            dedup,
            inputs,
            cursors,
            heap: BinaryHeap::new(),
            loaded: Vec::new(),
            out: Vec::new(),
            dups: 0,
            last: None,
            started: false,
        })
    }

    /// Loads the next non-empty batch of input `i` and queues its first row.
    async fn advance_input(&mut self, i: usize) -> Result<(), ArrowError> {
        while let Some(batch) = self.inputs[i].try_next().await? {
            if batch.num_rows() == 0 {
                continue;
            }
            if batch.schema_ref() != &self.schema {
                return Err(ArrowError::SchemaError("merge input does not have the expected schema".into()));
            }
            let columns: Vec<_> = self.sort_columns.iter().map(|&c| batch.column(c).clone()).collect();
            let rows = self.converter.convert_columns(&columns)?;
            self.heap.push(Reverse((rows.row(0).owned(), i)));
            self.loaded.push(batch.clone());
            self.cursors[i] = Some(Cursor { loaded: self.loaded.len() - 1, len: batch.num_rows(), rows, pos: 0 });
            return Ok(());
        }
        self.cursors[i] = None;
        Ok(())
    }

    /// The next output batch, or `None` when every input is exhausted.
    pub(crate) async fn next(&mut self) -> Result<Option<Merged>, ArrowError> {
        if !self.started {
            self.started = true;
            for i in 0..self.inputs.len() {
                self.advance_input(i).await?;
            }
        }
        while self.out.len() < OUTPUT_ROWS {
            let Some(Reverse((row, i))) = self.heap.pop() else { break };
            let cursor = self.cursors[i].as_mut().expect("queued inputs have a cursor");
            let at = (cursor.loaded, cursor.pos);
            if self.dedup && self.last.as_ref().is_some_and(|last| last.row() == row.row()) {
                self.dups += 1;
            } else {
                self.out.push(at);
                self.last = Some(row);
            }
            cursor.pos += 1;
            if cursor.pos < cursor.len {
                self.heap.push(Reverse((cursor.rows.row(cursor.pos).owned(), i)));
            } else {
                self.advance_input(i).await?;
            }
        }
        if self.out.is_empty() && self.dups == 0 {
            return Ok(None);
        }
        let merged = Merged { rows: self.take()?, duplicates: std::mem::take(&mut self.dups) };
        self.compact_loaded();
        Ok(Some(merged))
    }

    fn take(&mut self) -> Result<RecordBatch, ArrowError> {
        let indices = std::mem::take(&mut self.out);
        if indices.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let batches: Vec<&RecordBatch> = self.loaded.iter().collect();
        interleave_record_batch(&batches, &indices)
    }

    /// Forgets batches no cursor points into any more.
    fn compact_loaded(&mut self) {
        let mut kept = Vec::new();
        for cursor in self.cursors.iter_mut().flatten() {
            kept.push(self.loaded[cursor.loaded].clone());
            cursor.loaded = kept.len() - 1;
        }
        self.loaded = kept;
    }
}

/// A stream of one in-memory batch list, for tests and small inputs.
#[cfg(test)]
pub(crate) fn stream_of(batches: Vec<RecordBatch>) -> BatchStream {
    futures::stream::iter(batches.into_iter().map(Ok)).boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false), Field::new("v", DataType::Int64, false)]))
    }

    fn batch(keys: &[i64], value: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![Arc::new(Int64Array::from(keys.to_vec())), Arc::new(Int64Array::from(vec![value; keys.len()]))],
        )
        .unwrap()
    }

    async fn run(dedup: bool, inputs: Vec<Vec<RecordBatch>>) -> (Vec<(i64, i64)>, usize) {
        let inputs = inputs.into_iter().map(stream_of).collect();
        let mut merge = SortedMerge::new(schema(), &["k"], dedup, inputs).unwrap();
        let (mut rows, mut dups) = (Vec::new(), 0);
        while let Some(merged) = merge.next().await.unwrap() {
            let k = merged.rows.column(0).as_primitive::<Int64Type>();
            let v = merged.rows.column(1).as_primitive::<Int64Type>();
            rows.extend(k.values().iter().copied().zip(v.values().iter().copied()));
            dups += merged.duplicates;
        }
        (rows, dups)
    }

    #[tokio::test]
    async fn sorted_inputs_merge_into_one_sorted_output() {
        let (rows, dups) = run(
            false,
            vec![vec![batch(&[1, 4], 0), batch(&[9], 0)], vec![batch(&[2, 3, 10], 1)], vec![], vec![batch(&[], 2)]],
        )
        .await;
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4, 9, 10]);
        assert_eq!(dups, 0);
    }

    #[tokio::test]
    async fn with_dedup_equal_keys_are_kept_once() {
        let (rows, dups) = run(true, vec![vec![batch(&[1, 2, 2], 0)], vec![batch(&[2, 3], 1)]]).await;
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(dups, 2);
    }

    /// Many inputs cut into batches of 1 to 3 rows, with keys repeated
    /// within and across inputs: every row comes out once, as a row or as a
    /// duplicate, and the rows in order with each key once.
    #[tokio::test]
    async fn batch_boundaries_lose_no_rows() {
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..50 {
            let mut inputs = Vec::new();
            let mut all = Vec::new();
            for input in 0..(1 + next(12) as i64) {
                let mut keys: Vec<i64> = (0..next(40)).map(|_| next(60) as i64).collect();
                keys.sort();
                all.extend(keys.iter().copied());
                let mut batches = Vec::new();
                let mut rest = &keys[..];
                while !rest.is_empty() {
                    let (head, tail) = rest.split_at((1 + next(3) as usize).min(rest.len()));
                    batches.push(batch(head, input));
                    rest = tail;
                }
                inputs.push(batches);
            }
            let (rows, dups) = run(true, inputs).await;
            let mut unique = all.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), unique);
            assert_eq!(rows.len() + dups, all.len());
        }
    }

    #[tokio::test]
    async fn large_merges_span_many_output_batches() {
        let a: Vec<i64> = (0..20_000).map(|i| i * 2).collect();
        let b: Vec<i64> = (0..20_000).map(|i| i * 2 + 1).collect();
        let (rows, _) = run(true, vec![vec![batch(&a, 0)], vec![batch(&b, 1)]]).await;
        assert_eq!(rows.len(), 40_000);
        assert!(rows.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
