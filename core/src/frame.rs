//! A borrowed view of one video frame: pixel format, size, row stride and bytes.

/// The raw formats the element and the search accept, in the element's order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb,
    Bgr,
    Rgbx,
    Bgrx,
    Rgba,
    Bgra,
    Gray8,
}

impl PixelFormat {
    /// Every format, in the order used for caps negotiation. The element's pad template and the
    /// search's appsink both list them in this order, so `videoconvert` picks the same one.
    pub const ALL: [PixelFormat; 7] = [
        PixelFormat::Rgb,
        PixelFormat::Bgr,
        PixelFormat::Rgbx,
        PixelFormat::Bgrx,
        PixelFormat::Rgba,
        PixelFormat::Bgra,
        PixelFormat::Gray8,
    ];

    /// The GStreamer video format name.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb => "RGB",
            PixelFormat::Bgr => "BGR",
            PixelFormat::Rgbx => "RGBx",
            PixelFormat::Bgrx => "BGRx",
            PixelFormat::Rgba => "RGBA",
            PixelFormat::Bgra => "BGRA",
            PixelFormat::Gray8 => "GRAY8",
        }
    }

    pub fn from_name(name: &str) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb | PixelFormat::Bgr => 3,
            PixelFormat::Rgbx | PixelFormat::Bgrx | PixelFormat::Rgba | PixelFormat::Bgra => 4,
            PixelFormat::Gray8 => 1,
        }
    }

    /// Byte offsets of red, green and blue within a pixel (all 0 for gray).
    pub fn rgb_offsets(self) -> [usize; 3] {
        match self {
            PixelFormat::Rgb | PixelFormat::Rgbx | PixelFormat::Rgba => [0, 1, 2],
            PixelFormat::Bgr | PixelFormat::Bgrx | PixelFormat::Bgra => [2, 1, 0],
            PixelFormat::Gray8 => [0, 0, 0],
        }
    }
}

/// `video/x-raw` caps listing [`PixelFormat::ALL`], for any size and frame rate.
pub fn raw_caps_string() -> String {
    let names: Vec<&str> = PixelFormat::ALL.iter().map(|f| f.name()).collect();
    format!("video/x-raw, format=(string){{ {} }}", names.join(", "))
}

/// A frame that does not hold what its description says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame {width}×{height} {format:?} with stride {stride}: {message}")]
pub struct FrameError {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub message: String,
}

/// One frame's pixels, borrowed. Rows start `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: usize,
    data: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn new(
        format: PixelFormat,
        width: u32,
        height: u32,
        stride: usize,
        data: &'a [u8],
    ) -> Result<Frame<'a>, FrameError> {
        let fail = |message: String| FrameError {
            format,
            width,
            height,
            stride,
            message,
        };
        if width == 0 || height == 0 {
            return Err(fail("empty frame".into()));
        }
        let row = width as usize * format.bytes_per_pixel();
        if stride < row {
            return Err(fail(format!("stride is shorter than a row of {row} bytes")));
        }
        let needed = stride * (height as usize - 1) + row;
        if data.len() < needed {
            return Err(fail(format!("{} bytes given, {needed} needed", data.len())));
        }
        Ok(Frame {
            format,
            width,
            height,
            stride,
            data,
        })
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }
    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The bytes of row `y`, without padding.
    pub fn row(&self, y: u32) -> &'a [u8] {
        let start = y as usize * self.stride;
        &self.data[start..start + self.width as usize * self.format.bytes_per_pixel()]
    }
}
