//! `EarlyExitMeta`: a `GstCustomMeta` holding one frame's decision, readable from any language
//! through `gst_buffer_get_custom_meta (buf, "EarlyExitMeta")`.

use gst::meta::CustomMeta;

/// The name the meta is registered under.
pub const NAME: &str = "EarlyExitMeta";

/// Registers the meta. No tags: a tagless meta is kept by elements such as `videoconvert` and
/// `videoscale`, which drop metas tagged with what they change.
pub fn register() {
    // Registering a name twice is a GLib critical, and tests register the plugin more than once.
    if !CustomMeta::is_registered(NAME) {
        CustomMeta::register(NAME, &[]);
    }
}

/// One frame's decision, as carried by `EarlyExitMeta` and the `earlyexit` element message.
/// Serialized (by `earlyexitpublish`) under the meta's field names.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EarlyExitInfo {
    /// 0-based stage where the frame left; `stages - 1` is the last stage.
    pub stage: u32,
    pub stages: u32,
    pub class_id: i32,
    /// Class name, when the bundle has labels.
    pub label: Option<String>,
    /// Probability of `class_id` at the stage where the frame left.
    pub confidence: f64,
    /// The exit metric's value at that stage.
    pub score: f64,
    /// MACs used / backbone MACs, when the bundle gives MACs.
    pub cost: Option<f64>,
    /// Wall time of preprocessing and inference for this frame.
    pub inference_ns: u64,
    /// Format 3's stream rule: 0 when the frame ran the cascade; else it reused the answer
    /// computed this many frames before, and the fields above are that answer's.
    pub reused: u32,
    /// Whether the audit also ran the frame at full depth.
    pub audited: bool,
    /// Whether the answer is the full backbone's because the audit did not trust the bundle.
    pub fallback: bool,
    /// Whether the bundle's models gave no finite answer: the class then means nothing and the
    /// confidence is 0.
    pub non_finite: bool,
    /// How a frame that came too late to run in full was answered: "none" (it was not late),
    /// "reused" (the last answer again) or "shallowest" (at the first exit).
    pub degraded: String,
    /// The name of the element that decided, and the bundle it ran (its `model` property):
    /// with several `earlyexit` elements in a pipeline, each puts its own meta on a buffer.
    pub element: String,
    pub bundle: String,
}

impl EarlyExitInfo {
    /// Builds the info from a core decision and the label of its class, for `element`
    /// running `bundle`.
    pub fn from_decision(
        decision: &earlyexit::Decision,
        label: Option<&str>,
        element: &str,
        bundle: &str,
    ) -> EarlyExitInfo {
        EarlyExitInfo {
            stage: u32::try_from(decision.stage).unwrap_or(u32::MAX),
            stages: u32::try_from(decision.stages).unwrap_or(u32::MAX),
            class_id: i32::try_from(decision.class_id).unwrap_or(i32::MAX),
            label: label.map(str::to_owned),
            confidence: decision.confidence,
            score: decision.score,
            cost: decision.cost,
            inference_ns: decision.inference_ns,
            reused: decision.reused.unwrap_or(0),
            audited: decision.audited,
            fallback: decision.fallback,
            non_finite: decision.unanswered,
            degraded: match decision.hurried {
                None => "none",
                Some(earlyexit::Hurry::Reuse) => "reused",
                Some(earlyexit::Hurry::Shallowest) => "shallowest",
            }
            .to_owned(),
            element: element.to_owned(),
            bundle: bundle.to_owned(),
        }
    }

    /// Writes the fields into `s`; `label` and `cost` only when known.
    pub fn write(&self, s: &mut gst::StructureRef) {
        s.set("stage", self.stage);
        s.set("stages", self.stages);
        s.set("class-id", self.class_id);
        if let Some(label) = &self.label {
            s.set("label", label.as_str());
        }
        s.set("confidence", self.confidence);
        s.set("score", self.score);
        if let Some(cost) = self.cost {
            s.set("cost", cost);
        }
        s.set("inference-ns", self.inference_ns);
        s.set("reused", self.reused);
        s.set("audited", self.audited);
        s.set("fallback", self.fallback);
        s.set("non-finite", self.non_finite);
        s.set("degraded", self.degraded.as_str());
        s.set("element", self.element.as_str());
        s.set("bundle", self.bundle.as_str());
    }

    /// Reads the fields from a structure written by [`EarlyExitInfo::write`]. The error says
    /// which field is missing or of the wrong type.
    pub fn read(s: &gst::StructureRef) -> Result<EarlyExitInfo, String> {
        fn text(e: impl std::fmt::Display) -> String {
            e.to_string()
        }
        Ok(EarlyExitInfo {
            stage: s.get("stage").map_err(text)?,
            stages: s.get("stages").map_err(text)?,
            class_id: s.get("class-id").map_err(text)?,
            label: s.get_optional("label").map_err(text)?,
            confidence: s.get("confidence").map_err(text)?,
            score: s.get("score").map_err(text)?,
            cost: s.get_optional("cost").map_err(text)?,
            inference_ns: s.get("inference-ns").map_err(text)?,
            // Written by every version since the stream rule; absent before, meaning 0.
            reused: s.get_optional("reused").map_err(text)?.unwrap_or(0),
            audited: s.get_optional("audited").map_err(text)?.unwrap_or(false),
            fallback: s.get_optional("fallback").map_err(text)?.unwrap_or(false),
            non_finite: s.get_optional("non-finite").map_err(text)?.unwrap_or(false),
            degraded: s
                .get_optional("degraded")
                .map_err(text)?
                .unwrap_or_else(|| "none".to_owned()),
            element: s.get_optional("element").map_err(text)?.unwrap_or_default(),
            bundle: s.get_optional("bundle").map_err(text)?.unwrap_or_default(),
        })
    }

    /// Puts an `EarlyExitMeta` holding this info on `buffer`, in place of one the same
    /// element put there before; the metas of other `earlyexit` elements stay, in the order
    /// the elements ran.
    pub fn attach(&self, buffer: &mut gst::BufferRef) -> Result<(), gst::glib::BoolError> {
        buffer.foreach_meta_mut(|meta| {
            let own = meta
                .try_as_custom_meta()
                .filter(|m| m.has_name(NAME))
                .and_then(|m| m.structure().get::<&str>("element").ok())
                .is_some_and(|element| element == self.element);
            std::ops::ControlFlow::Continue(if own {
                gst::buffer::BufferMetaForeachAction::Remove
            } else {
                gst::buffer::BufferMetaForeachAction::Keep
            })
        });
        let mut meta = CustomMeta::add(buffer, NAME)?;
        self.write(meta.mut_structure());
        Ok(())
    }

    /// The info of `buffer`'s first `EarlyExitMeta` (the first `earlyexit` element's), or
    /// `None` when it has none or it is malformed.
    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<EarlyExitInfo> {
        let meta = CustomMeta::from_buffer(buffer, NAME).ok()?;
        EarlyExitInfo::read(meta.structure()).ok()
    }

    /// The info of every `EarlyExitMeta` on `buffer`, one per `earlyexit` element, in the
    /// order they ran; malformed ones are skipped.
    pub fn all_from_buffer(buffer: &gst::BufferRef) -> Vec<EarlyExitInfo> {
        buffer
            .iter_meta::<gst::Meta>()
            .filter_map(|meta| {
                let custom = meta.try_as_custom_meta()?;
                custom.has_name(NAME).then_some(())?;
                EarlyExitInfo::read(custom.structure()).ok()
            })
            .collect()
    }
}
