//! The `earlyexitoverlay` element: draws each frame's early-exit answers on the video. See
//! `imp.rs` for the element, `panel.rs` for the drawing and `docs/spec/element-v1.md` for the
//! contract.

use gst::glib;
use gst::prelude::*;

mod imp;
pub mod panel;

glib::wrapper! {
    pub struct EarlyExitOverlay(ObjectSubclass<imp::EarlyExitOverlay>)
        @extends gst::Element, gst::Object;
}

/// The `position` property: the corner of the frame the panel goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstEarlyExitOverlayPosition")]
pub enum Corner {
    #[enum_value(name = "Top left", nick = "top-left")]
    TopLeft = 0,
    #[enum_value(name = "Top right", nick = "top-right")]
    TopRight = 1,
    #[enum_value(name = "Bottom left", nick = "bottom-left")]
    BottomLeft = 2,
    #[enum_value(name = "Bottom right", nick = "bottom-right")]
    BottomRight = 3,
}

pub const DEFAULT_CORNER: Corner = Corner::TopLeft;

impl Corner {
    /// Where a `width` × `height` panel goes in a `frame_width` × `frame_height` frame,
    /// `margin` pixels from the corner's edges (less when the frame is too small for it).
    pub fn place(
        self,
        width: u32,
        height: u32,
        frame_width: u32,
        frame_height: u32,
        margin: u32,
    ) -> (i32, i32) {
        let far = |panel: u32, frame: u32| frame.saturating_sub(panel + margin);
        let near = |panel: u32, frame: u32| margin.min(frame.saturating_sub(panel));
        let (x, y) = match self {
            Corner::TopLeft => (near(width, frame_width), near(height, frame_height)),
            Corner::TopRight => (far(width, frame_width), near(height, frame_height)),
            Corner::BottomLeft => (near(width, frame_width), far(height, frame_height)),
            Corner::BottomRight => (far(width, frame_width), far(height, frame_height)),
        };
        (
            i32::try_from(x).unwrap_or(i32::MAX),
            i32::try_from(y).unwrap_or(i32::MAX),
        )
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "earlyexitoverlay",
        gst::Rank::NONE,
        EarlyExitOverlay::static_type(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_corner_places_the_panel_margin_pixels_from_its_edges() {
        assert_eq!(Corner::TopLeft.place(100, 20, 640, 480, 8), (8, 8));
        assert_eq!(Corner::TopRight.place(100, 20, 640, 480, 8), (532, 8));
        assert_eq!(Corner::BottomLeft.place(100, 20, 640, 480, 8), (8, 452));
        assert_eq!(Corner::BottomRight.place(100, 20, 640, 480, 8), (532, 452));
        // A panel wider than the frame starts at its left edge, whatever the corner.
        assert_eq!(Corner::TopRight.place(700, 20, 640, 480, 8), (0, 8));
        assert_eq!(Corner::TopLeft.place(700, 20, 640, 480, 8), (0, 8));
    }
}
