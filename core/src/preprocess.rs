//! Frame → stage 0's input tensor: stretch to the bundle's size, pick the color, apply
//! mean/std, lay out as NCHW or NHWC. The element and the search both call this, so they see
//! the same tensor for the same frame.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::frame::{Frame, PixelFormat};
use crate::input::{Color, InputSpec, Layout};

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

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 33;
    const H: u32 = 17;

    /// A deterministic byte for (x, y, byte-within-pixel, seed).
    fn noise(x: u32, y: u32, k: usize, seed: u32) -> u8 {
        let mut v = x
            .wrapping_mul(0x9E37_79B1)
            .wrapping_add(y.wrapping_mul(0x85EB_CA77))
            .wrapping_add((k as u32).wrapping_mul(0xC2B2_AE3D))
            .wrapping_add(seed.wrapping_mul(0x27D4_EB2F));
        v ^= v >> 15;
        v = v.wrapping_mul(0x2C1B_3C6D);
        v ^= v >> 12;
        (v >> 8) as u8
    }

    /// Red, green and blue of a pixel, spelled out per format (not via `rgb_offsets`).
    fn rgb_of(format: PixelFormat, px: &[u8]) -> [u8; 3] {
        match format {
            PixelFormat::Rgb | PixelFormat::Rgbx | PixelFormat::Rgba => [px[0], px[1], px[2]],
            PixelFormat::Bgr | PixelFormat::Bgrx | PixelFormat::Bgra => [px[2], px[1], px[0]],
            PixelFormat::Gray8 => [px[0]; 3],
        }
    }

    /// A w×h frame whose stride is the row rounded up to a multiple of 4 plus 7 more bytes.
    /// `pixel` gives each pixel's bytes; every padding byte is `garbage`.
    struct TestFrame {
        format: PixelFormat,
        w: u32,
        h: u32,
        stride: usize,
        data: Vec<u8>,
    }

    impl TestFrame {
        fn new(
            format: PixelFormat,
            w: u32,
            h: u32,
            garbage: u8,
            pixel: impl Fn(u32, u32, usize) -> u8,
        ) -> TestFrame {
            let bpp = format.bytes_per_pixel();
            let row = w as usize * bpp;
            let stride = row.div_ceil(4) * 4 + 7;
            assert!(stride > row);
            let mut data = vec![garbage; stride * h as usize];
            for y in 0..h {
                for x in 0..w {
                    for k in 0..bpp {
                        data[y as usize * stride + x as usize * bpp + k] = pixel(x, y, k);
                    }
                }
            }
            TestFrame {
                format,
                w,
                h,
                stride,
                data,
            }
        }

        fn noisy(format: PixelFormat, garbage: u8) -> TestFrame {
            TestFrame::new(format, W, H, garbage, |x, y, k| noise(x, y, k, 1))
        }

        fn frame(&self) -> Frame<'_> {
            Frame::new(self.format, self.w, self.h, self.stride, &self.data).unwrap()
        }

        fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
            let bpp = self.format.bytes_per_pixel();
            let at = y as usize * self.stride + x as usize * bpp;
            rgb_of(self.format, &self.data[at..at + bpp])
        }
    }

    fn spec(layout: Layout, color: Color, width: u32, height: u32) -> InputSpec {
        let (mean, std) = match color {
            Color::Gray => (vec![17.0], vec![3.0]),
            Color::Rgb | Color::Bgr => (vec![10.0, 20.0, 30.0], vec![2.0, 4.0, 8.0]),
        };
        InputSpec {
            layout,
            width,
            height,
            color,
            mean,
            std,
        }
    }

    fn specs(width: u32, height: u32) -> Vec<InputSpec> {
        let mut all = Vec::new();
        for layout in [Layout::Nchw, Layout::Nhwc] {
            for color in [Color::Rgb, Color::Bgr, Color::Gray] {
                all.push(spec(layout, color, width, height));
            }
        }
        all
    }

    fn index(spec: &InputSpec, c: usize, x: usize, y: usize) -> usize {
        let (w, h, channels) = (
            spec.width as usize,
            spec.height as usize,
            spec.color.channels(),
        );
        match spec.layout {
            Layout::Nchw => c * w * h + y * w + x,
            Layout::Nhwc => (y * w + x) * channels + c,
        }
    }

    /// The tensor computed plainly, from each pixel's channel values at the tensor's size.
    /// `gray8` says the frame is GRAY8, whose byte is used as it is for `gray`.
    fn reference(spec: &InputSpec, gray8: bool, rgb: impl Fn(u32, u32) -> [f32; 3]) -> Vec<f32> {
        let channels = spec.color.channels();
        let mut out = vec![f32::NAN; channels * (spec.width * spec.height) as usize];
        for y in 0..spec.height {
            for x in 0..spec.width {
                let [r, g, b] = rgb(x, y);
                let values = match spec.color {
                    Color::Gray if gray8 => vec![r],
                    Color::Gray => vec![0.299 * r + 0.587 * g + 0.114 * b],
                    Color::Rgb => vec![r, g, b],
                    Color::Bgr => vec![b, g, r],
                };
                for (c, v) in values.into_iter().enumerate() {
                    out[index(spec, c, x as usize, y as usize)] = (v - spec.mean[c]) / spec.std[c];
                }
            }
        }
        out
    }

    fn run(spec: &InputSpec, frame: &TestFrame) -> Vec<f32> {
        let mut p = Preprocessor::new(spec.clone());
        assert_eq!(p.shape(), spec.shape());
        let t = p.run(&frame.frame()).unwrap().to_vec();
        assert_eq!(t.len() as i64, spec.shape().iter().product::<i64>());
        t
    }

    #[test]
    fn every_format_at_the_spec_size_matches_a_plain_computation_exactly() {
        for format in PixelFormat::ALL {
            let frame = TestFrame::noisy(format, 0xAB);
            for spec in specs(W, H) {
                let got = run(&spec, &frame);
                let want = reference(&spec, format == PixelFormat::Gray8, |x, y| {
                    frame.rgb(x, y).map(f32::from)
                });
                assert_eq!(got, want, "{format:?} {:?} {:?}", spec.layout, spec.color);
            }
        }
    }

    #[test]
    fn gray_is_bt601_luma_and_channel_order_follows_the_format() {
        // One pixel, spelled out: R=200, G=100, B=50.
        let spec_gray = spec(Layout::Nchw, Color::Gray, 1, 1);
        let spec_rgb = spec(Layout::Nchw, Color::Rgb, 1, 1);
        let spec_bgr = spec(Layout::Nhwc, Color::Bgr, 1, 1);
        for (format, bytes) in [
            (PixelFormat::Rgb, vec![200, 100, 50]),
            (PixelFormat::Bgr, vec![50, 100, 200]),
            (PixelFormat::Rgbx, vec![200, 100, 50, 9]),
            (PixelFormat::Bgra, vec![50, 100, 200, 9]),
        ] {
            let frame = TestFrame::new(format, 1, 1, 0xAB, |_, _, k| bytes[k]);
            let luma = (0.299f32 * 200.0 + 0.587 * 100.0 + 0.114 * 50.0 - 17.0) / 3.0;
            assert_eq!(run(&spec_gray, &frame), [luma], "{format:?}");
            assert_eq!(
                run(&spec_rgb, &frame),
                [
                    (200.0 - 10.0) / 2.0,
                    (100.0 - 20.0) / 4.0,
                    (50.0 - 30.0) / 8.0
                ],
                "{format:?}"
            );
            assert_eq!(
                run(&spec_bgr, &frame),
                [
                    (50.0 - 10.0) / 2.0,
                    (100.0 - 20.0) / 4.0,
                    (200.0 - 30.0) / 8.0
                ],
                "{format:?}"
            );
        }
    }

    /// PIL-style separable convolution with the bilinear (triangle) filter, widened by the scale
    /// factor when shrinking, in f64 without rounding: the filter the format's "bilinear or
    /// better" stretch asks for, and the one fast_image_resize implements.
    fn coefficients(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
        let scale = input as f64 / output as f64;
        let filter_scale = scale.max(1.0);
        let support = filter_scale;
        (0..output)
            .map(|i| {
                let center = (i as f64 + 0.5) * scale;
                let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
                let hi = ((center + support + 0.5).floor() as usize).min(input);
                let mut w: Vec<f64> = (lo..hi)
                    .map(|j| {
                        let d = (j as f64 + 0.5 - center) / filter_scale;
                        (1.0 - d.abs()).max(0.0)
                    })
                    .collect();
                let sum: f64 = w.iter().sum();
                w.iter_mut().for_each(|v| *v /= sum);
                (lo, w)
            })
            .collect()
    }

    fn resample(plane: &[f64], w: usize, h: usize, tw: usize, th: usize) -> Vec<f64> {
        let (cx, cy) = (coefficients(w, tw), coefficients(h, th));
        let mut horizontal = vec![0.0; tw * h];
        for y in 0..h {
            for (x, (lo, ws)) in cx.iter().enumerate() {
                horizontal[y * tw + x] = ws
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| wk * plane[y * w + lo + k])
                    .sum();
            }
        }
        let mut out = vec![0.0; tw * th];
        for (y, (lo, ws)) in cy.iter().enumerate() {
            for x in 0..tw {
                out[y * tw + x] = ws
                    .iter()
                    .enumerate()
                    .map(|(k, wk)| wk * horizontal[(lo + k) * tw + x])
                    .sum();
            }
        }
        out
    }

    #[test]
    fn resizing_every_format_matches_a_plain_bilinear_reference() {
        for (tw, th) in [(16u32, 8u32), (40, 30)] {
            for format in PixelFormat::ALL {
                let frame = TestFrame::noisy(format, 0xAB);
                let planes: Vec<Vec<f64>> = (0..3)
                    .map(|c| {
                        let plane: Vec<f64> = (0..H)
                            .flat_map(|y| (0..W).map(move |x| (x, y)))
                            .map(|(x, y)| f64::from(frame.rgb(x, y)[c]))
                            .collect();
                        resample(&plane, W as usize, H as usize, tw as usize, th as usize)
                    })
                    .collect();
                let gray8 = format == PixelFormat::Gray8;
                for spec in specs(tw, th) {
                    let got = run(&spec, &frame);
                    // The expected pixel value of each tensor element, before mean/std.
                    let mut worst = 0f64;
                    for y in 0..th as usize {
                        for x in 0..tw as usize {
                            let i = y * tw as usize + x;
                            let [r, g, b] = [planes[0][i], planes[1][i], planes[2][i]];
                            let values = match spec.color {
                                Color::Gray if gray8 => vec![r],
                                Color::Gray => vec![0.299 * r + 0.587 * g + 0.114 * b],
                                Color::Rgb => vec![r, g, b],
                                Color::Bgr => vec![b, g, r],
                            };
                            for (c, want) in values.into_iter().enumerate() {
                                let t = got[index(&spec, c, x, y)];
                                let pixel =
                                    f64::from(t) * f64::from(spec.std[c]) + f64::from(spec.mean[c]);
                                worst = worst.max((pixel - want).abs());
                            }
                        }
                    }
                    // The resizer works on u8 pixels: its result is rounded to a whole level
                    // (≤ 0.5), its separable passes round in between (≤ 0.5 more, as the
                    // second pass's weights sum to 1), and its fixed-point coefficients differ
                    // from the exact ones by a little. So within 1.25 pixel levels, i.e.
                    // 1.25 / std in tensor units. A wrong filter (nearest neighbour, no
                    // widening when shrinking, swapped axes) misses by tens of levels on noise.
                    assert!(
                        worst <= 1.25,
                        "{format:?} → {tw}×{th} {:?} {:?}: off by {worst} levels",
                        spec.layout,
                        spec.color
                    );
                }
            }
        }
    }

    #[test]
    fn a_constant_color_stays_exactly_constant_when_resized() {
        for (tw, th) in [(16u32, 8u32), (40, 30)] {
            for format in PixelFormat::ALL {
                for color in [[0u8, 0, 0], [255, 255, 255], [201, 37, 118]] {
                    let frame = TestFrame::new(format, W, H, 0xAB, |_, _, k| match format {
                        PixelFormat::Gray8 => color[0],
                        _ => {
                            let bytes = match format {
                                PixelFormat::Bgr | PixelFormat::Bgrx | PixelFormat::Bgra => {
                                    [color[2], color[1], color[0], 77]
                                }
                                _ => [color[0], color[1], color[2], 77],
                            };
                            bytes[k]
                        }
                    });
                    let rgb = frame.rgb(0, 0).map(f32::from);
                    for spec in specs(tw, th) {
                        let want = reference(&spec, format == PixelFormat::Gray8, |_, _| rgb);
                        assert_eq!(
                            run(&spec, &frame),
                            want,
                            "{format:?} {color:?} → {tw}×{th} {:?} {:?}",
                            spec.layout,
                            spec.color
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_horizontal_gradient_resizes_to_its_analytic_value() {
        // value = 3 + 7·x at pixel centers; a linear ramp is reproduced exactly by the triangle
        // filter away from the borders, so the stretch must land within 2 levels of the ramp at
        // each output pixel's center (x_out + 0.5)·scale − 0.5, up to u8 rounding.
        for (tw, th) in [(16u32, 8u32), (40, 30)] {
            let frame = TestFrame::new(PixelFormat::Gray8, W, H, 0xAB, |x, _, _| (3 + 7 * x) as u8);
            let spec = spec(Layout::Nchw, Color::Gray, tw, th);
            let got = run(&spec, &frame);
            let scale = f64::from(W) / f64::from(tw);
            for y in 0..th as usize {
                // Leave out the columns whose filter window is cut by the border.
                for x in 2..tw as usize - 2 {
                    let at = (x as f64 + 0.5) * scale - 0.5;
                    let want = 3.0 + 7.0 * at;
                    let pixel = f64::from(got[index(&spec, 0, x, y)]) * 3.0 + 17.0;
                    assert!(
                        (pixel - want).abs() <= 2.0,
                        "{tw}×{th} at ({x}, {y}): {pixel} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn padding_bytes_and_the_fourth_byte_never_matter() {
        for (tw, th) in [(W, H), (16, 8), (40, 30)] {
            for format in PixelFormat::ALL {
                let a = TestFrame::noisy(format, 0xAB);
                let b = TestFrame::noisy(format, 0x00);
                let c = TestFrame::new(format, W, H, 0xFF, |x, y, k| {
                    // Same colors, a different X/alpha byte.
                    if k == 3 {
                        noise(x, y, k, 99)
                    } else {
                        noise(x, y, k, 1)
                    }
                });
                // The same pixels packed with no padding at all.
                let bpp = format.bytes_per_pixel();
                let packed: Vec<u8> = (0..H).flat_map(|y| a.frame().row(y).to_vec()).collect();
                let packed_frame = Frame::new(format, W, H, W as usize * bpp, &packed).unwrap();
                for spec in specs(tw, th) {
                    let ta = run(&spec, &a);
                    assert_eq!(ta, run(&spec, &b), "{format:?} → {tw}×{th}");
                    assert_eq!(ta, run(&spec, &c), "{format:?} → {tw}×{th}: 4th byte");
                    let mut p = Preprocessor::new(spec.clone());
                    assert_eq!(ta, p.run(&packed_frame).unwrap(), "{format:?} packed");
                    // A reused preprocessor gives the same tensor for the same frame again.
                    assert_eq!(ta, p.run(&a.frame()).unwrap(), "{format:?} reused");
                }
            }
        }
    }
}
