//! `evaluate` on a format-3 bundle: the stream rule reuses answers frame for frame as the
//! element does, and `--per-frame` and `--json` say which frames reused one.

mod evaluating;

use earlyexit_testkit::cut;

use earlyexit::reuse::{Detector, ReuseRule};

#[test]
fn evaluate_reuses_answers_frame_for_frame_as_the_element() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = earlyexit_testkit::gst::first_frames(
        "fmnist-belt-test-b.mkv",
        400,
        &tmp.path().join("belt.mkv"),
    );
    // Every detector, each on the grid the search gives it for 28 × 28 pictures.
    for (detector, grid, threshold) in [
        (Detector::Pixels, 8, 0.02),
        (Detector::Shape, 8, 0.3),
        (Detector::Shifted, 28, 0.05),
    ] {
        let mut b = cut::valid_bundle([0.9, 0.9]);
        b.format = earlyexit::bundle::Format::V3;
        b.reuse = Some(ReuseRule {
            detector,
            grid,
            threshold,
            max_age: 20,
        });
        let file = cut::write_bundle(&tmp.path().join(detector.word()), &b);
        let csv = tmp.path().join(format!("{}.csv", detector.word()));
        let (text, json) = evaluating::evaluate(&file, &[&clip], &[], &csv);
        let rows: Vec<(u32, i32, u32)> = text
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.rsplitn(5, ',').collect();
                (
                    f[3].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[0].parse().unwrap(),
                )
            })
            .collect();
        let element: Vec<(u32, i32, u32)> = earlyexit_testkit::gst::element_meta(&clip, &file)
            .into_iter()
            .map(|m| (m.stage, m.class_id, m.reused))
            .collect();
        assert_eq!(rows.len(), element.len());
        for (i, (ours, theirs)) in rows.iter().zip(&element).enumerate() {
            assert_eq!(
                ours, theirs,
                "{detector:?}, frame {i}: evaluate and the element disagree"
            );
        }
        let reused = rows.iter().filter(|r| r.2 > 0).count();
        assert!(
            reused > 0 && reused < rows.len(),
            "{detector:?}: {reused} reused"
        );
        assert!(rows.iter().all(|r| r.2 <= 20), "max-age 20");
        assert_eq!(json["reused"], serde_json::json!(reused));
    }
}
