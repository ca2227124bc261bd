//! Footage → frames: GStreamer decodes on its own thread and hands frames over a bounded
//! channel, so decoding overlaps with inference. The appsink asks for the element's own caps, so
//! `videoconvert` picks the same raw format for the search as for the element.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow, bail};
use crossbeam_channel::{Receiver, bounded};
use earlyexit::{Frame, PixelFormat};
use gst::prelude::*;

/// One footage argument: a path or URI, and its ground truth when given.
#[derive(Debug, Clone)]
pub struct Footage {
    /// As the user wrote it.
    pub name: String,
    pub uri: String,
    /// Label of decoded frame i, when ground truth was given.
    pub labels: Option<Vec<u32>>,
}

impl Footage {
    pub fn new(name: &str, ground_truth: Option<&Path>) -> Result<Footage> {
        let uri = to_uri(name)?;
        let labels = ground_truth.map(read_ground_truth).transpose()?;
        Ok(Footage {
            name: name.to_owned(),
            uri,
            labels,
        })
    }

    /// When ground truth was given with another row count than the `frames` decoded, says so:
    /// it may well be another footage's.
    pub fn ground_truth_mismatch(&self, frames: usize) -> Option<String> {
        let rows = self.labels.as_ref()?.len();
        (rows != frames).then(|| {
            format!(
                "{}: ground truth has {rows} rows, the footage decoded to {frames} frames",
                self.name
            )
        })
    }

    /// A warning when `decoded` frames fall short of the `expected` that the container
    /// promises: the file is truncated or damaged, and the frames past the damage are not
    /// used. A container's estimate may be a frame or two off, or 1%.
    pub fn shortfall(&self, decoded: usize, expected: Option<usize>) -> Option<String> {
        let expected = expected?;
        let slack = (expected / 100).max(2);
        (decoded + slack < expected).then(|| {
            format!(
                "{}: decoded {decoded} frames, but the container promises about {expected}; the file may be truncated or damaged, and only the frames decoded are used",
                self.name
            )
        })
    }

    /// The file name alone, for progress bars and tables.
    pub fn short_name(&self) -> String {
        Path::new(&self.name)
            .file_name()
            .map_or_else(|| self.name.clone(), |n| n.to_string_lossy().into_owned())
    }

    pub fn label(&self, frame: usize) -> Option<u32> {
        self.labels.as_ref()?.get(frame).copied()
    }

    /// Refuses ground truth that names a class the model does not have: it would count as
    /// wrong without a word, or train heads on a class that is not there.
    pub fn check_classes(&self, classes: usize) -> Result<()> {
        let labels = self.labels.as_deref().unwrap_or_default();
        if let Some((frame, label)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes)
        {
            bail!(
                "footage {}: the ground truth labels frame {frame} as class {label}, but the model has {classes} classes (0 to {})",
                self.name,
                classes.saturating_sub(1)
            );
        }
        Ok(())
    }
}

/// A URI as it is, or a path turned into a `file://` URI.
fn to_uri(name: &str) -> Result<String> {
    if name.contains("://") {
        return Ok(name.to_owned());
    }
    let path = PathBuf::from(name);
    if !path.is_file() {
        bail!("footage {name}: no such file");
    }
    let absolute = std::path::absolute(&path).with_context(|| format!("footage {name}"))?;
    gst::glib::filename_to_uri(&absolute, None)
        .map(|u| u.to_string())
        .with_context(|| format!("footage {name}: cannot make a URI"))
}

/// Reads a ground-truth CSV: header `frame,label`, then one row per frame.
pub fn read_ground_truth(path: &Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("ground truth {}: cannot read", path.display()))?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == "frame,label" => {}
        _ => bail!(
            "ground truth {}: the header must be 'frame,label'",
            path.display()
        ),
    }
    // Every frame from 0 has one row, so no frame number reaches the number of rows.
    let lines: Vec<(usize, &str)> = lines.filter(|(_, l)| !l.trim().is_empty()).collect();
    let mut labels = vec![u32::MAX; lines.len()];
    // The line each frame's row was read on, to name both lines of a frame given twice.
    let mut read_on = vec![0; lines.len()];
    for (number, line) in lines {
        let parse = || -> Option<(usize, u32)> {
            let (frame, label) = line.split_once(',')?;
            Some((frame.trim().parse().ok()?, label.trim().parse().ok()?))
        };
        let (frame, label) = parse().ok_or_else(|| {
            anyhow!(
                "ground truth {}: line {}: expected 'frame,label' with whole numbers, found '{line}'",
                path.display(),
                number + 1
            )
        })?;
        let Some(slot) = labels.get_mut(frame) else {
            bail!(
                "ground truth {}: line {}: frame {frame}, but the file has rows for {} frames, counted from 0",
                path.display(),
                number + 1,
                labels.len()
            );
        };
        if *slot != u32::MAX {
            bail!(
                "ground truth {}: line {}: frame {frame} again; line {} already gave its label",
                path.display(),
                number + 1,
                read_on[frame]
            );
        }
        *slot = label;
        read_on[frame] = number + 1;
    }
    // n rows, each a different frame below n: every frame has its label.
    Ok(labels)
}

/// A decoded frame, owning its pixels.
pub struct DecodedFrame {
    /// The frame's number in its footage, from 0: its index among the decoded frames. With a
    /// time range, the range's first frame is numbered by its time × the frame rate, and each
    /// frame after it one more: a footage whose frames outnumber its rate (its caps say 25 fps
    /// of 30) loses none, and `fit` renumbers its parts in time ([`crate::sample`]).
    pub index: usize,
    /// Its presentation time, in nanoseconds.
    pub pts_ns: Option<u64>,
    /// Whether the stream breaks before it, where the element forgets the last answer: its
    /// buffer was flagged DISCONT, or a gap, a new segment or stream, or a flush came first.
    pub stream_break: bool,
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: usize,
    data: Vec<u8>,
}

impl DecodedFrame {
    pub fn frame(&self) -> Frame<'_> {
        // Checked when the frame was made.
        Frame::new(
            self.format,
            self.width,
            self.height,
            self.stride,
            &self.data,
        )
        .expect("decoded frame matches its own description")
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

/// Which decoded frames of a footage are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    All,
    /// `count` frames spread evenly over a footage of about `total` frames.
    Evenly {
        count: usize,
        total: usize,
    },
    /// The first `count` frames: the footage's length is unknown, as a live stream's is.
    First(usize),
}

#[derive(Debug, PartialEq, Eq)]
enum Pick {
    Keep,
    Skip,
    Stop,
}

impl Sampling {
    /// At most `count` frames of a footage of `total` frames, when that is known.
    pub fn at_most(count: usize, total: Option<usize>) -> Sampling {
        match total {
            Some(total) if total > count => Sampling::Evenly { count, total },
            // All of them, or the first ones when the length is unknown.
            _ => Sampling::First(count),
        }
    }

    /// How many frames are kept of a footage of `total` frames, when either is known.
    pub fn expected(self, total: Option<usize>) -> Option<usize> {
        match self {
            Sampling::All => total,
            Sampling::Evenly { count, .. } => Some(count),
            Sampling::First(count) => Some(total.map_or(count, |t| t.min(count))),
        }
    }

    fn pick(self, index: usize) -> Pick {
        match self {
            Sampling::All => Pick::Keep,
            Sampling::First(count) if index < count => Pick::Keep,
            Sampling::First(_) => Pick::Stop,
            Sampling::Evenly { count, total } => {
                // The j-th kept frame is frame ⌊j·total/count⌋; this is the only j it can be.
                let j = (index * count).div_ceil(total.max(1));
                if j >= count {
                    Pick::Stop
                } else if j * total / count == index {
                    Pick::Keep
                } else {
                    Pick::Skip
                }
            }
        }
    }
}

/// A part of a footage in time: decoding seeks to `start` instead of decoding from the
/// beginning, and stops at `end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Option<gst::ClockTime>,
    pub end: Option<gst::ClockTime>,
}

impl TimeRange {
    pub fn is_whole(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }

    fn contains(&self, pts: gst::ClockTime) -> bool {
        self.start.is_none_or(|s| pts >= s) && self.end.is_none_or(|e| pts < e)
    }
}

/// Frames of one footage arriving from a decoding thread.
pub struct Decoder {
    pub frames: Receiver<DecodedFrame>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Decoder {
    /// Starts decoding `footage`, keeping the frames `sampling` picks.
    pub fn start(footage: &Footage, sampling: Sampling) -> Result<Decoder> {
        Decoder::start_in(footage, sampling, TimeRange::default())
    }

    /// Starts decoding the frames of `footage` within `range`.
    pub fn start_in(footage: &Footage, sampling: Sampling, range: TimeRange) -> Result<Decoder> {
        init()?;
        let (tx, rx) = bounded(8);
        let uri = footage.uri.clone();
        let name = footage.name.clone();
        // Labels are read by frame number: in a range, it must be the frame's time × rate.
        let by_time = footage.labels.is_some() && !range.is_whole();
        let thread = std::thread::Builder::new()
            .name("decode".into())
            .spawn(move || {
                decode(&uri, sampling, range, by_time, |frame| {
                    tx.send(frame).is_ok()
                })
                .with_context(|| format!("footage {name}"))
            })
            .context("cannot start the decoding thread")?;
        Ok(Decoder {
            frames: rx,
            thread: Some(thread),
        })
    }

    /// Waits for the decoding thread and returns its error, if any.
    pub fn finish(mut self) -> Result<()> {
        // Dropping the receiver lets a blocked sender see the end.
        drop(std::mem::replace(&mut self.frames, bounded(0).1));
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("the decoding thread panicked"))?,
            None => Ok(()),
        }
    }
}

pub fn init() -> Result<()> {
    gst::init().context("cannot initialise GStreamer")
}

/// `uridecodebin ! videoconvert ! appsink`, the appsink asking for the element's caps. The
/// appsink holds at most two frames (its default holds any number): with the channel full,
/// decoding waits, rather than running ahead through the whole footage, holding every frame
/// in memory and taking the CPU from the frames being timed.
fn pipeline(uri: &str) -> Result<(gst::Pipeline, gst_app::AppSink)> {
    let description = format!(
        "uridecodebin uri=\"{uri}\" ! videoconvert ! appsink name=sink sync=false max-buffers=2 caps=\"{}\"",
        earlyexit::frame::raw_caps_string()
    );
    let pipeline = gst::parse::launch(&description)
        .context("cannot build the decoding pipeline")?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("the decoding pipeline is not a pipeline"))?;
    let appsink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| anyhow!("the decoding pipeline has no appsink"))?;
    Ok((pipeline, appsink))
}

/// The first error message on the bus, as an error.
fn bus_error(bus: &gst::Bus) -> Result<()> {
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(err) = message.view() {
            bail!(
                "decoding failed: {}{}",
                err.error(),
                err.debug().map(|d| format!(" ({d})")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Decodes `uri` within `range` and hands the frames `sampling` picks to `sink`, until it
/// returns false. With `by_time`, a frame in a range whose time × rate is not its number is an
/// error.
fn decode(
    uri: &str,
    sampling: Sampling,
    range: TimeRange,
    by_time: bool,
    mut sink: impl FnMut(DecodedFrame) -> bool,
) -> Result<()> {
    let (pipeline, appsink) = pipeline(uri)?;
    let bus = pipeline
        .bus()
        .ok_or_else(|| anyhow!("pipeline without a bus"))?;
    let result = (|| {
        if !range.is_whole() {
            seek(&pipeline, &bus, range)?;
        }
        pipeline
            .set_state(gst::State::Playing)
            .context("cannot start decoding")?;
        let (mut index, mut first, mut stream_break) = (0, None, false);
        loop {
            // A timeout, so that an upstream error (which brings no EOS) is noticed.
            let Some(object) = appsink.try_pull_object(gst::ClockTime::from_mseconds(200)) else {
                bus_error(&bus)?;
                if appsink.is_eos() {
                    return Ok(());
                }
                continue;
            };
            let sample = match object.downcast::<gst::Sample>() {
                Ok(sample) => sample,
                Err(object) => {
                    // Where the element forgets the last answer, the next frame does too.
                    stream_break |= object.downcast_ref::<gst::Event>().is_some_and(|e| {
                        use gst::EventType as T;
                        matches!(
                            e.type_(),
                            T::Gap | T::Segment | T::StreamStart | T::FlushStop
                        )
                    });
                    continue;
                }
            };
            let number = if range.is_whole() {
                index
            } else {
                let Some(by_rate) = frame_number(&sample, range)? else {
                    continue;
                };
                let number = *first.get_or_insert(by_rate) + index;
                if by_time && by_rate != number {
                    bail!(
                        "frame {number} of the range lies at frame {by_rate} by its time and rate: the footage's frames do not follow its rate, so its ground truth cannot be read by frame number in a time range; extract it whole (no --start/--end)"
                    );
                }
                number
            };
            match sampling.pick(index) {
                Pick::Stop => return Ok(()),
                Pick::Keep => {
                    if !sink(to_frame(number, &sample, stream_break)?) {
                        return Ok(());
                    }
                    stream_break = false;
                }
                Pick::Skip => {}
            }
            index += 1;
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Prerolls and seeks to just before `range`, so that decoding reaches its first frame in
/// step.
fn seek(pipeline: &gst::Pipeline, bus: &gst::Bus, range: TimeRange) -> Result<()> {
    if pipeline.set_state(gst::State::Paused).is_err() {
        bus_error(bus)?;
        bail!("cannot open the footage");
    }
    pipeline
        .state(gst::ClockTime::from_seconds(30))
        .0
        .context("the footage did not preroll")?;
    // A second early: a decoder may hand out the frame before an accurate seek's target under
    // the target's time; frames before the range are dropped by their time.
    let start = range
        .start
        .unwrap_or(gst::ClockTime::ZERO)
        .saturating_sub(gst::ClockTime::SECOND);
    let (stop_type, stop) = match range.end {
        Some(end) => (gst::SeekType::Set, Some(end)),
        None => (gst::SeekType::None, None),
    };
    pipeline
        .seek(
            1.0,
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::SeekType::Set,
            start,
            stop_type,
            stop,
        )
        .map_err(|_| {
            anyhow!("cannot seek to {start} (a stream that cannot seek takes no --start/--end)")
        })?;
    Ok(())
}

/// The number of the frame in `sample` from its time and the frame rate, or `None` when it
/// lies outside `range` (a decoder may hand out a frame before the seek's target).
fn frame_number(sample: &gst::Sample, range: TimeRange) -> Result<Option<usize>> {
    let pts = sample
        .buffer()
        .and_then(|b| b.pts())
        .ok_or_else(|| anyhow!("a frame without a time, so --start/--end cannot place it"))?;
    if !range.contains(pts) {
        return Ok(None);
    }
    let caps = sample
        .caps()
        .ok_or_else(|| anyhow!("a sample without caps"))?;
    let fps = gst_video::VideoInfo::from_caps(caps)
        .context("unexpected caps")?
        .fps();
    if fps.numer() <= 0 || fps.denom() <= 0 {
        bail!("no fixed frame rate, which --start/--end need to number frames");
    }
    let number = (u128::from(pts.nseconds()) * fps.numer() as u128
        + fps.denom() as u128 * 500_000_000)
        / (fps.denom() as u128 * 1_000_000_000);
    Ok(Some(usize::try_from(number)?))
}

fn to_frame(index: usize, sample: &gst::Sample, stream_break: bool) -> Result<DecodedFrame> {
    let caps = sample
        .caps()
        .ok_or_else(|| anyhow!("a sample without caps"))?;
    let info = gst_video::VideoInfo::from_caps(caps).context("unexpected caps")?;
    let format = PixelFormat::from_name(info.format().to_str())
        .ok_or_else(|| anyhow!("unexpected format {}", info.format().to_str()))?;
    let buffer = sample
        .buffer()
        .ok_or_else(|| anyhow!("a sample without a buffer"))?;
    let map = buffer.map_readable().context("cannot map a buffer")?;
    let stride = info.stride()[0] as usize;
    let offset = info.offset()[0];
    let data = map
        .get(offset..)
        .ok_or_else(|| anyhow!("a buffer shorter than its caps say"))?
        .to_vec();
    Frame::new(format, info.width(), info.height(), stride, &data)?;
    Ok(DecodedFrame {
        index,
        pts_ns: buffer.pts().map(gst::ClockTime::nseconds),
        stream_break: stream_break || buffer.flags().contains(gst::BufferFlags::DISCONT),
        format,
        width: info.width(),
        height: info.height(),
        stride,
        data,
    })
}

/// A footage's length, as its container tells without decoding it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Length {
    /// In frames, or time × rate.
    pub frames: Option<usize>,
    pub seconds: Option<f64>,
    /// Frames per second, when fixed.
    pub fps: Option<f64>,
}

/// The number of frames in `footage`, from its duration (in frames, or time × rate), without
/// decoding it; `None` when the container does not tell.
pub fn estimate_frames(footage: &Footage) -> Result<Option<usize>> {
    Ok(length(footage)?.frames)
}

/// The length of `footage`, from its container.
pub fn length(footage: &Footage) -> Result<Length> {
    init()?;
    let (pipeline, appsink) = pipeline(&footage.uri)?;
    if pipeline.set_state(gst::State::Paused).is_err() {
        // The bus holds why, such as a missing file; the state change only says that it failed.
        let why = match pipeline.bus().map(|bus| bus_error(&bus)) {
            Some(Err(e)) => e,
            _ => anyhow!("the pipeline did not start"),
        };
        let _ = pipeline.set_state(gst::State::Null);
        return Err(why.context(format!("footage {}: cannot open", footage.name)));
    }
    let (prerolled, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    let mut length = Length::default();
    if prerolled.is_ok() {
        let seconds = pipeline
            .query_duration::<gst::ClockTime>()
            .map(|d| d.nseconds() as f64 / 1e9);
        let fps = appsink
            .static_pad("sink")
            .and_then(|pad| pad.current_caps())
            .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok())
            .map(|info| info.fps())
            .filter(|fps| fps.numer() > 0 && fps.denom() > 0)
            .map(|fps| f64::from(fps.numer()) / f64::from(fps.denom()));
        let in_frames = pipeline
            .query_duration::<gst::format::Default>()
            .map(|d| *d as usize);
        length = Length {
            frames: in_frames.or_else(|| Some((seconds? * fps?).round() as usize)),
            seconds,
            fps,
        };
    }
    let _ = pipeline.set_state(gst::State::Null);
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(text: &str) -> (tempfile::NamedTempFile, Result<Vec<u32>>) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        let labels = read_ground_truth(file.path());
        (file, labels)
    }

    /// The frames `sampling` keeps of a footage of `frames` frames.
    fn kept(sampling: Sampling, frames: usize) -> Vec<usize> {
        let mut kept = Vec::new();
        for i in 0..frames {
            match sampling.pick(i) {
                Pick::Keep => kept.push(i),
                Pick::Skip => {}
                Pick::Stop => break,
            }
        }
        kept
    }

    #[test]
    fn at_most_n_frames_are_n_spread_evenly_or_the_first_n_of_a_live_stream() {
        // 150 of 175: a stride of 2 would give 88.
        let k = kept(Sampling::at_most(150, Some(175)), 175);
        assert_eq!(k.len(), 150);
        assert!(
            k.windows(2).all(|w| (1..=2).contains(&(w[1] - w[0]))),
            "{k:?}"
        );
        assert_eq!(kept(Sampling::at_most(3, Some(10)), 10), vec![0, 3, 6]);
        // More asked for than there are: all of them.
        assert_eq!(kept(Sampling::at_most(20, Some(10)), 10).len(), 10);
        // A length estimate short of the truth still keeps at most the count.
        assert_eq!(kept(Sampling::at_most(10, Some(10)), 15).len(), 10);
        assert_eq!(kept(Sampling::at_most(4, None), 100), vec![0, 1, 2, 3]);
        assert_eq!(
            Sampling::at_most(150, Some(175)).expected(Some(175)),
            Some(150)
        );
        assert_eq!(Sampling::at_most(4, None).expected(None), Some(4));
        assert_eq!(kept(Sampling::All, 5).len(), 5);
    }

    #[test]
    fn decoding_waits_while_nobody_takes_the_frames() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        init().unwrap();
        let clip = earlyexit_testkit::footage("fmnist-test-a-5k.mkv");
        let (pipeline, appsink) = pipeline(&to_uri(clip.to_str().unwrap()).unwrap()).unwrap();
        let arrived = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&arrived);
        appsink
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        pipeline.set_state(gst::State::Playing).unwrap();
        let started = std::time::Instant::now();
        while arrived.load(Ordering::Relaxed) == 0 && started.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Once frames flow, decoding all 5,000 small ones takes a fraction of this.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let arrived = arrived.load(Ordering::Relaxed);
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            (1..=4).contains(&arrived),
            "{arrived} frames reached the appsink while none was taken"
        );
    }

    #[test]
    fn ground_truth_needs_one_row_per_frame_from_0() {
        let (_f, labels) = truth("frame,label\n1,7\n0,3\n\n2,0\n");
        assert_eq!(labels.unwrap(), vec![3, 7, 0]);
        // A typo in a frame number is named, not taken as a reason to allocate gigabytes.
        let (_f, labels) = truth("frame,label\n0,1\n4000000000,3\n");
        let e = labels.unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("rows for 2 frames"),
            "{e}"
        );
        let (_f, labels) = truth("frame,label\n0,1\n0,3\n");
        let e = labels.unwrap_err().to_string();
        assert!(
            e.contains("line 3: frame 0 again; line 2 already gave its label"),
            "{e}"
        );
    }

    #[test]
    fn footage_short_of_its_container_is_named() {
        let footage = Footage {
            name: "half.mkv".into(),
            uri: "file:///half.mkv".into(),
            labels: None,
        };
        let w = footage.shortfall(152, Some(300)).unwrap();
        assert!(
            w.contains("half.mkv: decoded 152 frames") && w.contains("about 300"),
            "{w}"
        );
        // An estimate a frame or two off, or none, says nothing.
        assert_eq!(footage.shortfall(298, Some(300)), None);
        assert_eq!(footage.shortfall(152, None), None);
    }

    #[test]
    fn a_label_beyond_the_classes_is_refused() {
        let footage = Footage {
            name: "clip.mkv".into(),
            uri: "file:///clip.mkv".into(),
            labels: Some(vec![0, 9, 10]),
        };
        assert!(footage.check_classes(11).is_ok());
        let e = footage.check_classes(10).unwrap_err().to_string();
        assert!(
            e.contains("clip.mkv") && e.contains("frame 2 as class 10"),
            "{e}"
        );
    }
}
