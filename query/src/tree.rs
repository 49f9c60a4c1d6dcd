//! A trace's spans as a tree: the order a waterfall shows them in, depths,
//! subtree sizes and the critical path. One implementation for the UI and
//! for SQL's `trace_tree`, `descendants` and `critical_path`.

use std::collections::HashMap;

/// What the tree needs of a span. An empty or unknown parent makes a root.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pub id: &'a [u8],
    pub parent: &'a [u8],
    pub start_ns: i64,
    pub end_ns: i64,
}

/// A span's place in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Index into the nodes given.
    pub index: usize,
    pub depth: usize,
    /// Spans below it, all levels.
    pub descendants: usize,
    /// Time this span itself adds to the critical path, if on it: its
    /// duration less what its critical children cover. Along the path these
    /// add up to the longest root's duration.
    pub critical_ns: Option<i64>,
}

/// The spans in depth-first order, siblings by start (then id); spans whose
/// parent is not in the trace, and spans caught in a cycle of parents, are
/// roots.
pub fn layout(nodes: &[Node<'_>]) -> Vec<Placed> {
    let mut by_start: Vec<usize> = (0..nodes.len()).collect();
    by_start.sort_by(|&a, &b| (nodes[a].start_ns, nodes[a].id).cmp(&(nodes[b].start_ns, nodes[b].id)));
    let index: HashMap<&[u8], usize> = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let parent_of = |i: usize| index.get(nodes[i].parent).copied().filter(|&p| p != i);
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    for &i in &by_start {
        match parent_of(i) {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }

    let mut placed = Vec::with_capacity(nodes.len());
    let mut seen = vec![false; nodes.len()];
    let walk = |start: usize, placed: &mut Vec<Placed>, seen: &mut Vec<bool>| {
        let mut stack = vec![(start, 0)];
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            placed.push(Placed { index: i, depth, descendants: 0, critical_ns: None });
            stack.extend(children[i].iter().rev().map(|&c| (c, depth + 1)));
        }
    };
    for &root in &roots {
        walk(root, &mut placed, &mut seen);
    }
    // A cycle of parents leaves spans unreached: show them as roots.
    for i in by_start {
        if !seen[i] {
            walk(i, &mut placed, &mut seen);
        }
    }
    // Descendants: the rows after a span that are deeper than it.
    for row in (0..placed.len()).rev() {
        let depth = placed[row].depth;
        placed[row].descendants = placed[row + 1..].iter().take_while(|p| p.depth > depth).count();
    }
    mark_critical_path(nodes, &children, &mut placed);
    placed
}

/// A span's nested-set numbers, as Tempo gives them: counting each span
/// once on the way down the tree (`left`) and once on the way back up
/// (`right`), so a span's descendants are the spans whose `left` lies
/// between its own two; `parent` is the parent's `left`, -1 for a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NestedSet {
    pub left: i64,
    pub right: i64,
    pub parent: i64,
}

/// One of a span's nested-set numbers, by Tempo's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NestedSetField {
    Left,
    Right,
    Parent,
}

impl NestedSetField {
    pub fn name(self) -> &'static str {
        match self {
            Self::Left => "nestedSetLeft",
            Self::Right => "nestedSetRight",
            Self::Parent => "nestedSetParent",
        }
    }

    pub fn of(self, set: &NestedSet) -> i64 {
        match self {
            Self::Left => set.left,
            Self::Right => set.right,
            Self::Parent => set.parent,
        }
    }
}

/// The nested-set numbers of `nodes`, in their order.
pub fn nested_sets(nodes: &[Node<'_>]) -> Vec<NestedSet> {
    let placed = layout(nodes);
    let mut sets = vec![NestedSet { left: 0, right: 0, parent: -1 }; nodes.len()];
    // Up the current path: the `left` of the span at each depth.
    let mut path: Vec<i64> = Vec::new();
    for (row, p) in placed.iter().enumerate() {
        // Entered before this row: `row` spans; left before it: those not
        // on its path.
        let left = (2 * row - p.depth + 1) as i64;
        path.truncate(p.depth);
        sets[p.index] =
            NestedSet { left, right: left + 2 * p.descendants as i64 + 1, parent: path.last().copied().unwrap_or(-1) };
        path.push(left);
    }
    sets
}

/// From the longest root down: the child that ends last (no later than its
/// parent), then the child that ends last before that one started, and so
/// on, recursively.
fn mark_critical_path(nodes: &[Node<'_>], children: &[Vec<usize>], placed: &mut [Placed]) {
    let duration = |i: usize| nodes[i].end_ns - nodes[i].start_ns;
    let row_of: HashMap<usize, usize> = placed.iter().enumerate().map(|(row, p)| (p.index, row)).collect();
    let Some(root) = placed.iter().filter(|p| p.depth == 0).map(|p| p.index).max_by_key(|&i| duration(i)) else {
        return;
    };
    let mut stack = vec![root];
    while let Some(i) = stack.pop() {
        let (start, mut until) = (nodes[i].start_ns, nodes[i].end_ns);
        let mut covered = 0;
        let mut kids = children[i].clone();
        kids.sort_by_key(|&c| std::cmp::Reverse(nodes[c].end_ns));
        for c in kids {
            if nodes[c].end_ns <= until && nodes[c].end_ns > start {
                stack.push(c);
                covered += nodes[c].end_ns - nodes[c].start_ns.max(start);
                until = nodes[c].start_ns;
            }
        }
        placed[row_of[&i]].critical_ns = Some(duration(i) - covered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &'static [u8], parent: &'static [u8], start_ns: i64, end_ns: i64) -> Node<'static> {
        Node { id, parent, start_ns, end_ns }
    }

    #[test]
    fn tree_order_depths_and_the_critical_path() {
        // a [0,100]: b [10,40] (with d [15,30]), c [50,90], e [60,120] ends after a.
        let nodes = [
            node(b"c", b"a", 50, 90),
            node(b"a", b"", 0, 100),
            node(b"d", b"b", 15, 30),
            node(b"b", b"a", 10, 40),
            node(b"e", b"a", 60, 120),
        ];
        let placed = layout(&nodes);
        let rows: Vec<(&[u8], usize, usize, Option<i64>)> =
            placed.iter().map(|p| (nodes[p.index].id, p.depth, p.descendants, p.critical_ns)).collect();
        assert_eq!(
            rows,
            [
                (&b"a"[..], 0, 4, Some(100 - 40 - 30)),
                (b"b", 1, 1, Some(30 - 15)),
                (b"d", 2, 0, Some(15)),
                (b"c", 1, 0, Some(40)),
                (b"e", 1, 0, None),
            ]
        );
        let on_path: i64 = placed.iter().filter_map(|p| p.critical_ns).sum();
        assert_eq!(on_path, 100, "the path adds up to the root's duration");
    }

    #[test]
    fn nested_sets_count_down_and_back_up() {
        let nodes = [
            node(b"c", b"a", 50, 90),
            node(b"a", b"", 0, 100),
            node(b"d", b"b", 15, 30),
            node(b"b", b"a", 10, 40),
            node(b"r", b"", 200, 300),
        ];
        let sets: Vec<(i64, i64, i64)> = nested_sets(&nodes).iter().map(|n| (n.left, n.right, n.parent)).collect();
        // a(1 b(2 d(3 4) 5) c(6 7) 8)  r(9 10)
        assert_eq!(sets, [(6, 7, 1), (1, 8, -1), (3, 4, 2), (2, 5, 1), (9, 10, -1)]);
    }

    #[test]
    fn orphans_and_cycles_become_roots() {
        let nodes = [node(b"x", b"y", 5, 6), node(b"y", b"x", 1, 2), node(b"o", b"missing", 0, 10)];
        let placed = layout(&nodes);
        let order: Vec<(&[u8], usize)> = placed.iter().map(|p| (nodes[p.index].id, p.depth)).collect();
        assert_eq!(order, [(&b"o"[..], 0), (b"y", 0), (b"x", 1)]);
        assert_eq!(placed[0].critical_ns, Some(10));
    }
}
