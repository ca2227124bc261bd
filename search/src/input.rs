//! The backbone's input as a bundle describes it, from what the model fixes and the flags.

use anyhow::{Result, bail};
use earlyexit::bundle::{Color, InputSpec, Layout};

use crate::cli::{ColorArg, InputArgs, LayoutArg};

/// Resolves the input spec from the model's batch-1 input shape and the user's flags.
pub fn resolve(shape: &[i64], args: &InputArgs) -> Result<InputSpec> {
    let &[_, a, b, c] = shape else {
        bail!("the backbone's input {shape:?} is not an image tensor [N, C, H, W] or [N, H, W, C]");
    };
    let is_channels = |d: i64| d == 1 || d == 3;
    let layout = match (args.layout, is_channels(a), is_channels(c)) {
        (Some(LayoutArg::Nchw), ..) => Layout::Nchw,
        (Some(LayoutArg::Nhwc), ..) => Layout::Nhwc,
        (None, true, false) => Layout::Nchw,
        (None, false, true) => Layout::Nhwc,
        (None, ..) => bail!(
            "the backbone's input {shape:?} could be read as nchw or nhwc (or neither); pass --layout"
        ),
    };
    let (channels, height, width) = match layout {
        Layout::Nchw => (a, b, c),
        Layout::Nhwc => (c, a, b),
    };
    if !is_channels(channels) {
        bail!(
            "the backbone's input {shape:?} has {channels} channels as {layout:?}; 1 (gray) or 3 (rgb, bgr) are supported"
        );
    }
    let color = match args.color {
        Some(ColorArg::Gray) => Color::Gray,
        Some(ColorArg::Rgb) => Color::Rgb,
        Some(ColorArg::Bgr) => Color::Bgr,
        None if channels == 1 => Color::Gray,
        None => Color::Rgb,
    };
    if color.channels() as i64 != channels {
        bail!(
            "--color needs {} channels, the backbone's input {shape:?} has {channels}",
            color.channels()
        );
    }
    for (flag, given, model) in [
        ("--width", args.width, width),
        ("--height", args.height, height),
    ] {
        if let Some(v) = given
            && i64::from(v) != model
        {
            bail!("{flag} {v} differs from the backbone's input {shape:?}");
        }
    }
    Ok(InputSpec {
        layout,
        width: u32::try_from(width)?,
        height: u32::try_from(height)?,
        color,
        mean: per_channel("--mean", args.mean.as_deref(), 0.0, color.channels())?,
        std: {
            let std = per_channel("--std", args.std.as_deref(), 255.0, color.channels())?;
            if std.contains(&0.0) {
                bail!("--std must not contain 0");
            }
            std
        },
    })
}

/// `"0.5,0.4,0.3"` or one number for every channel.
fn per_channel(flag: &str, text: Option<&str>, default: f32, channels: usize) -> Result<Vec<f32>> {
    let Some(text) = text else {
        return Ok(vec![default; channels]);
    };
    let values = text
        .split(',')
        .map(|v| v.trim().parse::<f32>().ok().filter(|x| x.is_finite()))
        .collect::<Option<Vec<f32>>>();
    match values {
        Some(v) if v.len() == 1 => Ok(vec![v[0]; channels]),
        Some(v) if v.len() == channels => Ok(v),
        Some(v) => bail!("{flag} {text}: {} values for {channels} channels", v.len()),
        None => bail!("{flag} {text}: expected comma-separated numbers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_read_from_the_shape_when_only_one_fits() {
        let args = InputArgs::default();
        let nchw = resolve(&[1, 1, 28, 28], &args).unwrap();
        assert_eq!(
            (nchw.layout, nchw.color, nchw.width),
            (Layout::Nchw, Color::Gray, 28)
        );
        assert_eq!(
            (nchw.mean.clone(), nchw.std.clone()),
            (vec![0.0], vec![255.0])
        );
        let nhwc = resolve(&[1, 32, 48, 3], &args).unwrap();
        assert_eq!(
            (nhwc.layout, nhwc.color, nhwc.width, nhwc.height),
            (Layout::Nhwc, Color::Rgb, 48, 32)
        );
    }

    #[test]
    fn an_ambiguous_shape_needs_layout() {
        let err = resolve(&[1, 3, 8, 3], &InputArgs::default()).unwrap_err();
        assert!(err.to_string().contains("--layout"), "{err}");
        let args = InputArgs {
            layout: Some(LayoutArg::Nhwc),
            ..InputArgs::default()
        };
        assert_eq!(resolve(&[1, 3, 8, 3], &args).unwrap().layout, Layout::Nhwc);
    }

    #[test]
    fn mean_and_std_take_one_or_one_per_channel() {
        let args = InputArgs {
            mean: Some("127".into()),
            std: Some("1,2,3".into()),
            ..InputArgs::default()
        };
        let spec = resolve(&[1, 3, 4, 4], &args).unwrap();
        assert_eq!(spec.mean, vec![127.0; 3]);
        assert_eq!(spec.std, vec![1.0, 2.0, 3.0]);
        let bad = InputArgs {
            std: Some("1,2".into()),
            ..InputArgs::default()
        };
        assert!(resolve(&[1, 3, 4, 4], &bad).is_err());
    }
}
