//! `spans_below(span_id, parent_span_id, marked)` and `spans_above(…)`:
//! aggregates over the spans of one trace (`GROUP BY trace_id`) that answer
//! the ids of every span below (or above) a marked span, following the
//! parent links among the spans given. TraceQL's `>>` and `<<` walk each
//! trace this way in one pass over its spans; a recursive CTE rescans the
//! window once per level instead.
//!
//! A span given twice counts once (marked if either copy is), and a cycle
//! in bad data (a span that is its own ancestor) ends the walk.

use std::collections::{HashMap, HashSet};
use std::mem::size_of;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    Below,
    Above,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct SpanWalk {
    direction: Direction,
    signature: Signature,
}

impl SpanWalk {
    pub(super) fn below() -> Self {
        Self { direction: Direction::Below, signature: Signature::any(3, Volatility::Immutable) }
    }

    pub(super) fn above() -> Self {
        Self { direction: Direction::Above, signature: Signature::any(3, Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for SpanWalk {
    fn name(&self) -> &str {
        match self.direction {
            Direction::Below => "spans_below",
            Direction::Above => "spans_above",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args[2] != DataType::Boolean {
            return exec_err!("{} takes a boolean third (whether the span is marked), not {}", self.name(), args[2]);
        }
        Ok(DataType::new_list(DataType::Binary, true))
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Walk { direction: self.direction, spans: Vec::new() }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Field::new(format_state_name(args.name, "spans"), DataType::Binary, true).into()])
    }
}

type Id = [u8; 8];

/// A root's parent, as `span_key` writes it too.
const NO_PARENT: Id = [0; 8];

#[derive(Debug, Clone, Copy)]
struct Span {
    id: Id,
    parent: Id,
    marked: bool,
}

impl Span {
    /// Bytes of a span in the state: id, parent, marked.
    const PACKED: usize = 17;

    fn pack(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.parent);
        out.push(self.marked.into());
    }

    fn unpack(bytes: &[u8]) -> Self {
        let id = |range: std::ops::Range<usize>| -> Id { bytes[range].try_into().expect("8 bytes") };
        Self { id: id(0..8), parent: id(8..16), marked: bytes[16] != 0 }
    }
}

/// An id as 8 bytes: ids of another width (a bad upload) stand for no span.
fn id(ids: &BinaryArray, row: usize) -> Option<Id> {
    if ids.is_null(row) { None } else { ids.value(row).try_into().ok() }
}

#[derive(Debug)]
struct Walk {
    direction: Direction,
    spans: Vec<Span>,
}

impl Walk {
    /// The ids of the spans below (or above) a marked one, each once.
    fn walk(&self) -> HashSet<Id> {
        let marked = self.spans.iter().filter(|s| s.marked).map(|s| s.id);
        let mut found: HashSet<Id> = HashSet::new();
        match self.direction {
            Direction::Below => {
                let mut children: HashMap<Id, Vec<Id>> = HashMap::new();
                for span in self.spans.iter().filter(|s| s.parent != NO_PARENT) {
                    children.entry(span.parent).or_default().push(span.id);
                }
                // Each span found is expanded once, so a cycle ends.
                let mut stack: Vec<Id> = marked.collect();
                while let Some(id) = stack.pop() {
                    for &child in children.get(&id).into_iter().flatten() {
                        if found.insert(child) {
                            stack.push(child);
                        }
                    }
                }
            }
            Direction::Above => {
                let parents: HashMap<Id, Id> = self.spans.iter().map(|s| (s.id, s.parent)).collect();
                for mut id in marked {
                    // Up while the parent is one of the spans given and not
                    // reached before (then its ancestors were, too).
                    while let Some(&parent) = parents.get(&id) {
                        if !parents.contains_key(&parent) || !found.insert(parent) {
                            break;
                        }
                        id = parent;
                    }
                }
            }
        }
        found
    }
}

impl Accumulator for Walk {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [ids, parents] = [&values[0], &values[1]].map(|ids| cast(ids, &DataType::Binary));
        let (ids, parents) = (ids?, parents?);
        let (ids, parents) = (ids.as_binary::<i32>(), parents.as_binary::<i32>());
        let marked = values[2].as_boolean();
        self.spans.reserve(ids.len());
        for row in 0..ids.len() {
            if let Some(span) = id(ids, row) {
                let parent = id(parents, row).unwrap_or(NO_PARENT);
                self.spans.push(Span { id: span, parent, marked: marked.is_valid(row) && marked.value(row) });
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let ids: Vec<ScalarValue> = self.walk().into_iter().map(|id| ScalarValue::Binary(Some(id.to_vec()))).collect();
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(&ids, &DataType::Binary)))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.spans.capacity() * size_of::<Span>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut packed = Vec::with_capacity(self.spans.len() * Span::PACKED);
        for span in &self.spans {
            span.pack(&mut packed);
        }
        Ok(vec![ScalarValue::Binary(Some(packed))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for packed in states[0].as_binary::<i32>().iter().flatten() {
            self.spans.extend(packed.chunks_exact(Span::PACKED).map(Span::unpack));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, FixedSizeBinaryArray};

    use super::*;

    fn span(n: u8) -> Id {
        [n; 8]
    }

    /// Spans as (id, parent, marked); 0 is no parent.
    fn walked(direction: Direction, spans: &[(u8, u8, bool)]) -> Vec<u8> {
        let ids = FixedSizeBinaryArray::try_from_iter(spans.iter().map(|s| span(s.0))).unwrap();
        let parents = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            spans.iter().map(|s| (s.1 != 0).then(|| span(s.1))),
            8,
        )
        .unwrap();
        let marked = BooleanArray::from(spans.iter().map(|s| s.2).collect::<Vec<_>>());
        // Half the spans through the state, as a two-phase aggregate does.
        let half = spans.len() / 2;
        let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(parents), Arc::new(marked)];
        let (mut first, mut second) = (Walk { direction, spans: Vec::new() }, Walk { direction, spans: Vec::new() });
        first.update_batch(&columns.iter().map(|c| c.slice(0, half)).collect::<Vec<_>>()).unwrap();
        second.update_batch(&columns.iter().map(|c| c.slice(half, spans.len() - half)).collect::<Vec<_>>()).unwrap();
        let state = first.state().unwrap()[0].to_array().unwrap();
        second.merge_batch(&[state]).unwrap();
        let mut out: Vec<u8> = second.walk().into_iter().map(|id| id[0]).collect();
        out.sort();
        out
    }

    //        1
    //      /   \
    //     2     3
    //    / \     \
    //   4   5     6
    //             |
    //             7
    const TREE: [(u8, u8, bool); 7] =
        [(1, 0, false), (2, 1, false), (3, 1, false), (4, 2, false), (5, 2, false), (6, 3, false), (7, 6, false)];

    fn marking(marked: &[u8]) -> Vec<(u8, u8, bool)> {
        TREE.iter().map(|&(id, parent, _)| (id, parent, marked.contains(&id))).collect()
    }

    #[test]
    fn below_a_marked_span_is_its_whole_subtree_without_it() {
        assert_eq!(walked(Direction::Below, &marking(&[3])), vec![6, 7]);
        assert_eq!(walked(Direction::Below, &marking(&[1])), vec![2, 3, 4, 5, 6, 7]);
        assert_eq!(walked(Direction::Below, &marking(&[2, 6])), vec![4, 5, 7]);
        // A marked span under another marked one is below it.
        assert_eq!(walked(Direction::Below, &marking(&[1, 3])), vec![2, 3, 4, 5, 6, 7]);
        assert_eq!(walked(Direction::Below, &marking(&[4, 7])), Vec::<u8>::new());
    }

    #[test]
    fn above_a_marked_span_is_its_chain_to_the_root() {
        assert_eq!(walked(Direction::Above, &marking(&[7])), vec![1, 3, 6]);
        assert_eq!(walked(Direction::Above, &marking(&[4, 5])), vec![1, 2]);
        assert_eq!(walked(Direction::Above, &marking(&[7, 6])), vec![1, 3, 6]);
        assert_eq!(walked(Direction::Above, &marking(&[1])), Vec::<u8>::new());
    }

    #[test]
    fn a_parent_not_given_ends_the_walk_and_a_cycle_ends() {
        // 3's parent is missing (outside the window): 6 and 7 stand alone.
        let mut spans = marking(&[7]);
        spans.retain(|s| s.0 != 3);
        assert_eq!(walked(Direction::Above, &spans), vec![6]);
        let cycle = [(1, 2, true), (2, 1, false), (3, 2, false)];
        assert_eq!(walked(Direction::Below, &cycle), vec![1, 2, 3]);
        assert_eq!(walked(Direction::Above, &cycle), vec![1, 2]);
    }

    #[test]
    fn a_span_given_twice_counts_once_and_marked_if_either_copy_is() {
        let mut spans = marking(&[]);
        spans.push((3, 1, true));
        assert_eq!(walked(Direction::Below, &spans), vec![6, 7]);
        assert_eq!(walked(Direction::Above, &spans), vec![1]);
    }
}
