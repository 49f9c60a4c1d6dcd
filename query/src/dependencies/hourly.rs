//! Whole hours of a graph, summed once: per tenant and hour, the calls of
//! the edge files (merged ones, level 1 and up) that overlap the hour,
//! kept in memory while those files stay the same. A graph over days adds
//! up a few hundred entries per hour instead of reading every file again;
//! late spans, merges and retention change the files, so an hour's sum is
//! never stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use spanlake_storage::edges::CallStats;
use spanlake_storage::{DataFile, TenantId};

use crate::params::HOUR_NS;

/// Calls of an hour per (parent, child, duration bucket).
pub(crate) type HourCalls = BTreeMap<(String, String, i32), CallStats>;

/// Hours kept: a month of them.
const MAX_HOURS: usize = 31 * 24;

#[derive(Debug)]
struct Hour {
    files: Vec<String>,
    calls: Arc<HourCalls>,
}

#[derive(Debug, Default)]
pub(crate) struct HourlyEdges {
    hours: Mutex<HashMap<(TenantId, i64), Hour>>,
}

impl HourlyEdges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, i64), Hour>> {
        self.hours.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sum of the hour at `hour_ns` if it was made from exactly `files`.
    pub(crate) fn get(&self, tenant: &TenantId, hour_ns: i64, files: &[&DataFile]) -> Option<Arc<HourCalls>> {
        let hours = self.lock();
        let hour = hours.get(&(tenant.clone(), hour_ns))?;
        (hour.files.iter().map(String::as_str).eq(files.iter().map(|f| f.path.as_str())))
            .then(|| Arc::clone(&hour.calls))
    }

    pub(crate) fn put(&self, tenant: &TenantId, hour_ns: i64, files: &[&DataFile], calls: Arc<HourCalls>) {
        let mut hours = self.lock();
        if hours.len() >= MAX_HOURS {
            // The oldest hours make room.
            let mut oldest: Vec<(i64, TenantId)> = hours.keys().map(|(t, h)| (*h, t.clone())).collect();
            oldest.sort_unstable();
            for (hour, tenant) in oldest.into_iter().take(MAX_HOURS / 8) {
                hours.remove(&(tenant, hour));
            }
        }
        let files = files.iter().map(|f| f.path.clone()).collect();
        hours.insert((tenant.clone(), hour_ns), Hour { files, calls });
    }
}

/// The whole hours of `[start_ns, end_ns)`, and the ragged ranges around them.
pub(crate) fn split(start_ns: i64, end_ns: i64) -> (Vec<i64>, Vec<(i64, i64)>) {
    let first = start_ns.div_euclid(HOUR_NS) * HOUR_NS + if start_ns.rem_euclid(HOUR_NS) == 0 { 0 } else { HOUR_NS };
    let last = end_ns.div_euclid(HOUR_NS) * HOUR_NS;
    if first >= last {
        return (Vec::new(), vec![(start_ns, end_ns)]);
    }
    let hours = (first..last).step_by(HOUR_NS as usize).collect();
    let ragged = [(start_ns, first), (last, end_ns)].into_iter().filter(|(a, b)| a < b).collect();
    (hours, ragged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_splits_into_whole_hours_and_ragged_ends() {
        let h = 1_000 * HOUR_NS;
        assert_eq!(split(h, h + 2 * HOUR_NS), (vec![h, h + HOUR_NS], vec![]));
        assert_eq!(split(h - 5, h + HOUR_NS + 7), (vec![h], vec![(h - 5, h), (h + HOUR_NS, h + HOUR_NS + 7)]));
        assert_eq!(split(h + 1, h + 9), (vec![], vec![(h + 1, h + 9)]));
    }
}
