//! The ceiling ingest is measured against: the same requests decoded from
//! protobuf into Arrow and encoded as sorted Parquet, on one core, with no
//! network, WAL or catalog in between.

use std::time::{Duration, Instant};

use anyhow::Context;
use spanlake_storage::{FileKind, IngestLimits, SpanBatchBuilder, data_file};

use super::requests::Templates;

/// Spans per second of decode + sort + encode on the calling thread, over at
/// least `spans` spans and `min_time`.
pub(crate) fn decode_and_encode(templates: &Templates, spans: usize, min_time: Duration) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut done = 0;
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    for send in 0.. {
        if done >= spans && started.elapsed() >= min_time {
            break;
        }
        builder
            .append_protobuf(templates.request(send).1.as_slice())
            .ok()
            .context("a request the server leaves to prost")?;
        if builder.len() >= data_file::ROW_GROUP_ROWS {
            done += encode(&mut builder)?;
        }
    }
    done += encode(&mut builder)?;
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

fn encode(builder: &mut SpanBatchBuilder) -> anyhow::Result<usize> {
    let batch = builder.finish()?;
    data_file::encode(FileKind::Spans, &data_file::sort(FileKind::Spans, &batch)?)?;
    Ok(batch.num_rows())
}
