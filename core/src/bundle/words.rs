//! The words of the format's enum-valued keys (`layout: nchw`, `metric: margin`, ...), for
//! reading and writing them and for errors that list the choices.

use super::types::{Format, Measure};
use crate::gate::GateInput;
use crate::input::{Color, Layout};
use crate::reuse::Detector;
use crate::rule::{Metric, Output};

/// The enum-valued keys of the format, with the word each value is written as.
pub trait Word: Copy + Sized + 'static {
    const ALL: &'static [Self];
    fn word(self) -> &'static str;
}

macro_rules! words {
    ($ty:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl Word for $ty {
            const ALL: &'static [Self] = &[$($ty::$variant),+];
            fn word(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }
    };
}

words!(Layout { Nchw => "nchw", Nhwc => "nhwc" });
words!(Color { Rgb => "rgb", Bgr => "bgr", Gray => "gray" });
words!(Output { Logits => "logits", Probabilities => "probabilities" });
words!(Measure { Agreement => "agreement", Accuracy => "accuracy" });
words!(Format { V1 => "earlyexit/1", V2 => "earlyexit/2", V3 => "earlyexit/3" });

/// Metrics, gate inputs and detectors name themselves: the words are part of what they mean.
impl Word for Metric {
    const ALL: &'static [Self] = &Metric::ALL;
    fn word(self) -> &'static str {
        Metric::word(self)
    }
}

impl Word for GateInput {
    const ALL: &'static [Self] = &GateInput::ALL;
    fn word(self) -> &'static str {
        GateInput::word(self)
    }
}

impl Word for Detector {
    const ALL: &'static [Self] = &Detector::ALL;
    fn word(self) -> &'static str {
        Detector::word(self)
    }
}
