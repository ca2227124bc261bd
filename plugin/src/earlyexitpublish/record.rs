//! One frame's record, as `earlyexitpublish` writes it: a JSON object on one line.

use serde::Serialize;

use crate::meta::EarlyExitInfo;

/// A frame's results, with where the frame was. Field names are the meta's own
/// (`docs/spec/element-v1.md`), so a record reads like the `EarlyExitMeta` it came from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record<'a> {
    /// The `stream` property, or the stream's id from its STREAM_START event.
    pub stream: &'a str,
    /// Frames seen by the element since it started, from 0.
    pub frame: u64,
    /// The buffer's presentation time in nanoseconds, or null.
    pub pts_ns: Option<u64>,
    /// One entry per `earlyexit` element that decided on the frame, in the order they ran;
    /// empty when none did.
    pub results: &'a [EarlyExitInfo],
}

impl Record<'_> {
    /// The record as one line of JSON, with its newline.
    pub fn to_line(&self) -> Vec<u8> {
        // Serializing plain numbers, strings and bools cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(stage: u32, label: Option<&str>) -> EarlyExitInfo {
        EarlyExitInfo {
            stage,
            stages: 3,
            class_id: 7,
            label: label.map(str::to_owned),
            confidence: 0.75,
            score: 0.5,
            cost: None,
            inference_ns: 1200,
            reused: 0,
            audited: false,
            fallback: false,
            non_finite: false,
            degraded: "none".into(),
            element: "ee0".into(),
            bundle: "b/exits.yaml".into(),
        }
    }

    #[test]
    fn a_record_is_one_line_of_json_with_the_meta_field_names() {
        let results = [info(1, Some("sneaker")), info(2, None)];
        let record = Record {
            stream: "cam-1",
            frame: 41,
            pts_ns: Some(1_640_000_000),
            results: &results,
        };
        let line = record.to_line();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&line).expect("valid JSON");
        assert_eq!(value["stream"], "cam-1");
        assert_eq!(value["frame"], 41);
        assert_eq!(value["pts-ns"], 1_640_000_000u64);
        assert_eq!(value["results"][0]["class-id"], 7);
        assert_eq!(value["results"][0]["label"], "sneaker");
        assert_eq!(value["results"][0]["inference-ns"], 1200);
        assert_eq!(value["results"][0]["non-finite"], false);
        assert_eq!(value["results"][1]["stage"], 2);
        assert!(value["results"][1]["label"].is_null());
        assert!(value["results"][1]["cost"].is_null());
    }

    #[test]
    fn a_frame_without_results_or_time_still_has_its_record() {
        let record = Record {
            stream: "s",
            frame: 0,
            pts_ns: None,
            results: &[],
        };
        let value: serde_json::Value = serde_json::from_slice(&record.to_line()).expect("JSON");
        assert!(value["pts-ns"].is_null());
        assert_eq!(value["results"], serde_json::json!([]));
    }
}
