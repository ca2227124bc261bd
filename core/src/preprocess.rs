//! Frame → stage 0's input tensor: stretch to the bundle's size, pick the color, apply
//! mean/std, lay out as NCHW or NHWC. The element and the search both call this, so they see
//! the same tensor for the same frame.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::bundle::{Color, InputSpec, Layout};
use crate::frame::{Frame, PixelFormat};

#[derive(Debug, thiserror::Error)]
#[error("preprocessing a {width}×{height} {format} frame: {message}")]
pub struct PreprocessError {
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    pub message: String,
}

/// Turns frames into input tensors, reusing its buffers from frame to frame.
pub struct Preprocessor {
    spec: InputSpec,
    resizer: Resizer,
    options: ResizeOptions,
    /// The frame's rows without padding, when its stride has any.
    packed: Vec<u8>,
    /// The frame stretched to the tensor's size, in the frame's own pixel format.
    resized: Option<Image<'static>>,
    tensor: Vec<f32>,
}

impl Preprocessor {
    pub fn new(spec: InputSpec) -> Preprocessor {
        let len = spec.color.channels() * spec.width as usize * spec.height as usize;
        Preprocessor {
            spec,
            resizer: Resizer::new(),
            // Bilinear stretch, as the format asks; the fourth byte of RGBx/RGBA is not alpha to us.
            options: ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
                .use_alpha(false),
            packed: Vec::new(),
            resized: None,
            tensor: vec![0.0; len],
        }
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    /// The tensor's shape, batch 1.
    pub fn shape(&self) -> [i64; 4] {
        self.spec.shape()
    }

    /// Preprocesses `frame`; the returned tensor lives until the next call.
    pub fn run(&mut self, frame: &Frame) -> Result<&[f32], PreprocessError> {
        let format = frame.format();
        let bpp = format.bytes_per_pixel();
        let (w, h) = (frame.width(), frame.height());
        let fail = |message: String| PreprocessError {
            format: format.name(),
            width: w,
            height: h,
            message,
        };
        let row = w as usize * bpp;
        let pixels: &[u8] = if frame.stride() == row {
            &frame.data()[..row * h as usize]
        } else {
            self.packed.clear();
            for y in 0..h {
                self.packed.extend_from_slice(frame.row(y));
            }
            &self.packed
        };
        let (tw, th) = (self.spec.width, self.spec.height);
        let pixels: &[u8] = if (w, h) == (tw, th) {
            pixels
        } else {
            let pixel_type = match bpp {
                1 => PixelType::U8,
                3 => PixelType::U8x3,
                _ => PixelType::U8x4,
            };
            let src = ImageRef::new(w, h, pixels, pixel_type).map_err(|e| fail(e.to_string()))?;
            let dst = match &mut self.resized {
                Some(img) if img.pixel_type() == pixel_type => img,
                slot => slot.insert(Image::new(tw, th, pixel_type)),
            };
            self.resizer
                .resize(&src, dst, &self.options)
                .map_err(|e| fail(e.to_string()))?;
            dst.buffer()
        };
        fill_tensor(&self.spec, format, pixels, &mut self.tensor);
        Ok(&self.tensor)
    }
}

/// BT.601 luma, in float32, in this order of operations.
pub fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Writes the tensor from packed pixels already at the tensor's size.
fn fill_tensor(spec: &InputSpec, format: PixelFormat, pixels: &[u8], tensor: &mut [f32]) {
    let bpp = format.bytes_per_pixel();
    let [ro, go, bo] = format.rgb_offsets();
    let plane = spec.width as usize * spec.height as usize;
    let channels = spec.color.channels();
    // Output channel c reads source byte `order[c]` of each pixel (gray computes luma instead).
    let order = match spec.color {
        Color::Rgb | Color::Gray => [ro, go, bo],
        Color::Bgr => [bo, go, ro],
    };
    for (i, px) in pixels.chunks_exact(bpp).take(plane).enumerate() {
        for c in 0..channels {
            let value = match spec.color {
                Color::Gray if format == PixelFormat::Gray8 => f32::from(px[0]),
                Color::Gray => luma(f32::from(px[ro]), f32::from(px[go]), f32::from(px[bo])),
                Color::Rgb | Color::Bgr => f32::from(px[order[c]]),
            };
            let index = match spec.layout {
                Layout::Nchw => c * plane + i,
                Layout::Nhwc => i * channels + c,
            };
            tensor[index] = (value - spec.mean[c]) / spec.std[c];
        }
    }
}
