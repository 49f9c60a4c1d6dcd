//! The trace index: per trace and service, a "fragment" with the time
//! bounds, span and error counts and, in the fragment that holds it, the
//! root span's name.
//!
//! Every span file has a fragment file of its own, written with it from the
//! same rows and in the same order (service, then trace), and named in its
//! catalog entry. A trace whose spans arrive in several flushes (or hours)
//! has several fragments for a service; readers sum whatever is live (the
//! `trace_index` view), so the totals are right at any time, and
//! compaction, which rewrites span files, recomputes the fragments of its
//! outputs from their rows instead of merging fragment files. A trace
//! lookup reads the trace's fragments first, and then only the span files
//! of the hours they name.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, Int64Builder, RecordBatch, StringArray, StringDictionaryBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampNanosecondType};
use arrow::error::ArrowError;

use crate::batch::TimestampColumn;
use crate::schema::{self, trace_index as ti};

/// A string column of `batch`, whatever string type it has.
pub(crate) fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray, ArrowError> {
    let column = batch.column_by_name(name).ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))?;
    Ok(cast(column, &DataType::Utf8)?.as_string::<i32>().clone())
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ArrowError> {
    batch.column_by_name(name).ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))
}

/// A fragment being summed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub trace_id: [u8; 16],
    pub service: Option<String>,
    pub start: i64,
    pub end: i64,
    pub spans: i64,
    pub errors: i64,
    pub root_span_name: Option<String>,
}

impl Fragment {
    fn absorb(&mut self, other: Fragment) {
        self.start = self.start.min(other.start);
        self.end = self.end.max(other.end);
        self.spans += other.spans;
        self.errors += other.errors;
        if self.root_span_name.is_none() {
            self.root_span_name = other.root_span_name;
        }
    }
}

/// The fragments of a batch of spans, as a batch in fragment file order.
pub fn fragments_of_spans(spans: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    to_batch(fragments(spans)?)
}

/// The fragments of a batch of spans in any order, sorted by service and
/// trace id (the span file order, nulls first).
pub fn fragments(spans: &RecordBatch) -> Result<Vec<Fragment>, ArrowError> {
    let trace_id = column(spans, schema::TRACE_ID)?.as_fixed_size_binary();
    let parent = column(spans, schema::PARENT_SPAN_ID)?;
    let start = column(spans, schema::START_TIME)?.as_primitive::<TimestampNanosecondType>();
    let duration = column(spans, schema::DURATION_NS)?.as_primitive::<Int64Type>();
    let service = strings(spans, schema::SERVICE_NAME)?;
    let status = strings(spans, schema::STATUS_CODE)?;
    let name = strings(spans, schema::SPAN_NAME)?;
    let mut by_key: HashMap<([u8; 16], Option<&str>), Fragment> = HashMap::new();
    for row in 0..spans.num_rows() {
        let id: [u8; 16] = trace_id.value(row).try_into().expect("16-byte trace ids");
        let service = (!service.is_null(row)).then(|| service.value(row));
        let begin = start.value(row);
        let fragment = Fragment {
            trace_id: id,
            service: service.map(str::to_owned),
            start: begin,
            end: begin.saturating_add(duration.value(row).max(0)),
            spans: 1,
            errors: i64::from(status.value(row) == schema::STATUS_CODES[2]),
            root_span_name: parent.is_null(row).then(|| name.value(row).to_owned()),
        };
        match by_key.get_mut(&(id, service)) {
            Some(existing) => existing.absorb(fragment),
            None => {
                by_key.insert((id, service), fragment);
            }
        }
    }
    let mut fragments: Vec<Fragment> = by_key.into_values().collect();
    fragments.sort_by(|a, b| (&a.service, a.trace_id).cmp(&(&b.service, b.trace_id)));
    Ok(fragments)
}

/// The fragments of spans that arrive in span file order, batch by batch:
/// a trace's spans of one service may straddle two batches, so the last
/// fragment of each batch is held back until the next one shows whether it
/// goes on.
#[derive(Debug, Default)]
pub struct SortedFragments {
    open: Option<Fragment>,
}

impl SortedFragments {
    /// The fragments that `spans` completes.
    pub fn add(&mut self, spans: &RecordBatch) -> Result<Vec<Fragment>, ArrowError> {
        let mut done = combine_sorted(self.open.take().into_iter().chain(fragments(spans)?));
        self.open = done.pop();
        Ok(done)
    }

    /// The fragment still open, when no more spans follow.
    pub fn finish(&mut self) -> Option<Fragment> {
        self.open.take()
    }
}

/// Reads fragment rows back.
pub fn read_fragments(batch: &RecordBatch) -> Result<Vec<Fragment>, ArrowError> {
    let trace_id = column(batch, ti::TRACE_ID)?.as_fixed_size_binary();
    let service = strings(batch, ti::SERVICE_NAME)?;
    let start = column(batch, ti::START_TIME)?.as_primitive::<TimestampNanosecondType>();
    let end = column(batch, ti::END_TIME)?.as_primitive::<TimestampNanosecondType>();
    let spans = column(batch, ti::SPAN_COUNT)?.as_primitive::<Int64Type>();
    let errors = column(batch, ti::ERROR_COUNT)?.as_primitive::<Int64Type>();
    let root = strings(batch, ti::ROOT_SPAN_NAME)?;
    Ok((0..batch.num_rows())
        .map(|row| Fragment {
            trace_id: trace_id.value(row).try_into().expect("16-byte trace ids"),
            service: (!service.is_null(row)).then(|| service.value(row).to_owned()),
            start: start.value(row),
            end: end.value(row),
            spans: spans.value(row),
            errors: errors.value(row),
            root_span_name: (!root.is_null(row)).then(|| root.value(row).to_owned()),
        })
        .collect())
}

/// Sums runs of fragments with the same trace and service: `fragments`
/// must hold each pair's fragments side by side, as in any sorted order.
pub fn combine_sorted(fragments: impl IntoIterator<Item = Fragment>) -> Vec<Fragment> {
    let mut out: Vec<Fragment> = Vec::new();
    for fragment in fragments {
        match out.last_mut() {
            Some(last) if last.trace_id == fragment.trace_id && last.service == fragment.service => {
                last.absorb(fragment)
            }
            _ => out.push(fragment),
        }
    }
    out
}

pub fn to_batch(fragments: Vec<Fragment>) -> Result<RecordBatch, ArrowError> {
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(fragments.len(), 16);
    let mut service = StringDictionaryBuilder::<Int32Type>::new();
    let mut start = TimestampColumn::default();
    let mut end = TimestampColumn::default();
    let mut spans = Int64Builder::with_capacity(fragments.len());
    let mut errors = Int64Builder::with_capacity(fragments.len());
    let mut root = StringDictionaryBuilder::<Int32Type>::new();
    for f in fragments {
        trace_id.append_value(f.trace_id)?;
        service.append_option(f.service);
        start.push(f.start);
        end.push(f.end);
        spans.append_value(f.spans);
        errors.append_value(f.errors);
        root.append_option(f.root_span_name);
    }
    RecordBatch::try_new(
        schema::trace_index_schema(),
        vec![
            Arc::new(trace_id.finish()),
            Arc::new(service.finish()),
            start.finish(),
            end.finish(),
            Arc::new(spans.finish()),
            Arc::new(errors.finish()),
            Arc::new(root.finish()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    use super::*;
    use crate::{IngestLimits, SpanBatchBuilder};

    fn span(trace: u8, id: u8, parent: Option<u8>, start: u64, end: u64, error: bool) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("op-{id}"),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            status: Some(Status { code: if error { 2 } else { 0 }, message: String::new() }),
            ..Default::default()
        }
    }

    fn service(name: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(Value::StringValue(name.into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }
    }

    fn batch(resource_spans: &[ResourceSpans]) -> RecordBatch {
        let mut builder = SpanBatchBuilder::new(IngestLimits::default());
        builder.append(resource_spans);
        builder.finish().unwrap()
    }

    #[test]
    fn a_flush_gives_one_fragment_per_trace_and_service_in_span_file_order() {
        let spans = batch(&[
            service("web", vec![span(1, 1, None, 100, 900, false), span(1, 2, Some(1), 200, 300, true)]),
            service("db", vec![span(1, 3, Some(2), 210, 290, false), span(2, 4, Some(9), 50, 60, false)]),
        ]);
        let fragments = read_fragments(&fragments_of_spans(&spans).unwrap()).unwrap();
        let summary: Vec<_> = fragments
            .iter()
            .map(|f| {
                (f.trace_id[0], f.service.as_deref(), f.start, f.end, f.spans, f.errors, f.root_span_name.as_deref())
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, Some("db"), 210, 290, 1, 0, None),
                (2, Some("db"), 50, 60, 1, 0, None),
                (1, Some("web"), 100, 900, 2, 1, Some("op-1")),
            ]
        );
    }

    #[test]
    fn fragments_of_later_flushes_sum_up() {
        let first = fragments_of_spans(&batch(&[service("web", vec![span(1, 2, Some(1), 200, 300, true)])])).unwrap();
        let second = fragments_of_spans(&batch(&[service("web", vec![span(1, 1, None, 100, 900, false)])])).unwrap();
        let mut all = read_fragments(&first).unwrap();
        all.extend(read_fragments(&second).unwrap());
        let combined = combine_sorted(all);
        assert_eq!(combined.len(), 1);
        let f = &combined[0];
        assert_eq!((f.start, f.end, f.spans, f.errors, f.root_span_name.as_deref()), (100, 900, 2, 1, Some("op-1")));
    }

    #[test]
    fn fragments_of_sorted_batches_carry_a_trace_across_batch_boundaries() {
        let spans = crate::data_file::sort(
            crate::paths::FileKind::Spans,
            &batch(&[
                service(
                    "web",
                    (1..=4).map(|id| span(1, id, (id > 1).then_some(1), 100 * u64::from(id), 1000, id == 3)).collect(),
                ),
                service("db", vec![span(1, 9, Some(2), 150, 160, false), span(2, 8, None, 10, 20, false)]),
            ]),
        )
        .unwrap();
        let whole = fragments(&spans).unwrap();
        for cut in 0..=spans.num_rows() {
            let mut run = SortedFragments::default();
            let mut parts = run.add(&spans.slice(0, cut)).unwrap();
            parts.extend(run.add(&spans.slice(cut, spans.num_rows() - cut)).unwrap());
            parts.extend(run.finish());
            assert_eq!(parts, whole, "cut at {cut}");
        }
    }
}
