//! What stage 0 takes: the input tensor's layout, size, color and normalisation, as a bundle's
//! `input` describes it. [`crate::preprocess`] makes such a tensor from a frame.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Rgb,
    Bgr,
    /// BT.601 luma of the frame.
    Gray,
}

impl Color {
    pub fn channels(self) -> usize {
        match self {
            Color::Gray => 1,
            Color::Rgb | Color::Bgr => 3,
        }
    }
}

/// How a frame becomes stage 0's input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    pub color: Color,
    /// One per channel; tensor value = (pixel - mean) / std, pixel in 0..255.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl InputSpec {
    /// The tensor shape for batch 1.
    pub fn shape(&self) -> [i64; 4] {
        let (c, h, w) = (
            self.color.channels() as i64,
            i64::from(self.height),
            i64::from(self.width),
        );
        match self.layout {
            Layout::Nchw => [1, c, h, w],
            Layout::Nhwc => [1, h, w, c],
        }
    }
}
