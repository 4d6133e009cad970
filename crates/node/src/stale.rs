//! A stats record of values measured earlier, republished while the hardware probe does
//! not answer: readers see it is stale (and age it by its timestamp, which stays the
//! time the values were measured).

use vramroute_registry::GpuStatsRecord;

/// Extra key (SOLLOL ignores unknown keys): `true` when the record repeats the last
/// good values because the probe is stuck.
pub const PROBE_STALE_FIELD: &str = "probe_stale";
/// Extra key: for how many whole seconds the probe has not answered.
pub const PROBE_STUCK_SECONDS_FIELD: &str = "probe_stuck_s";

/// Marks `record` as the last good values, republished while the probe has been stuck
/// for `stuck_s` seconds (the caller measures it: this crate reads no clock).
pub fn mark_probe_stale(record: &mut GpuStatsRecord, stuck_s: u64) {
    record
        .extra
        .insert(PROBE_STALE_FIELD.to_owned(), serde_json::Value::Bool(true));
    record.extra.insert(
        PROBE_STUCK_SECONDS_FIELD.to_owned(),
        serde_json::Value::from(stuck_s),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_record_says_so_and_keeps_its_measured_time() {
        let mut record = GpuStatsRecord::new("10.0.0.1:11434", "nvidia", 1_800_000_000.0);
        mark_probe_stale(&mut record, 42);
        assert_eq!(record.timestamp, 1_800_000_000.0);
        let json: serde_json::Value =
            serde_json::from_str(&record.to_json()).expect("the record is JSON");
        assert_eq!(json["probe_stale"], serde_json::Value::Bool(true));
        assert_eq!(json["probe_stuck_s"], serde_json::json!(42));
    }
}
