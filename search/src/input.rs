//! The backbone's input as a bundle describes it, from what the model fixes and the flags.

use std::path::Path;

use anyhow::{Context, Result, bail};
use earlyexit::input::{Color, InputSpec, Layout};
use earlyexit_graph::{self as graph, Graph};

use crate::cli::{ColorArg, InputArgs, LayoutArg};
use crate::shard;

/// Reads the backbone and resolves its input from what the model fixes and the flags. A height
/// or width the model leaves open is fixed to the flag's before the graph is read, so that
/// every tensor's shape is known.
pub fn load_backbone(path: &Path, args: &InputArgs) -> Result<(Graph, InputSpec)> {
    let mut model = graph::read_model(path)?;
    let Some(declared) = graph::declared_input_dims(&model) else {
        // Not one input with a shape: the graph reader says which.
        Graph::from_model(model, path)?;
        bail!("backbone {}: the input declares no shape", path.display());
    };
    let spec = resolve(&declared, args).with_context(|| format!("backbone {}", path.display()))?;
    if declared.iter().skip(1).any(Option::is_none) {
        graph::fix_input_dims(&mut model, &spec.shape()[1..]);
    }
    Ok((Graph::from_model(model, path)?, spec))
}

/// `spec` as a shard's header records it.
pub fn describe(spec: &InputSpec) -> shard::Input {
    shard::Input {
        layout: match spec.layout {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
        .into(),
        width: spec.width,
        height: spec.height,
        color: match spec.color {
            Color::Rgb => "rgb",
            Color::Bgr => "bgr",
            Color::Gray => "gray",
        }
        .into(),
        mean: spec.mean.clone(),
        std: spec.std.clone(),
    }
}

/// The flags that give the input a shard's header records.
pub fn flags_of(input: &shard::Input) -> Result<InputArgs> {
    let list = |values: &[f32]| {
        values
            .iter()
            .map(f32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(InputArgs {
        layout: Some(match input.layout.as_str() {
            "nchw" => LayoutArg::Nchw,
            "nhwc" => LayoutArg::Nhwc,
            other => bail!("layout '{other}' is not nchw or nhwc"),
        }),
        width: Some(input.width),
        height: Some(input.height),
        color: Some(match input.color.as_str() {
            "rgb" => ColorArg::Rgb,
            "bgr" => ColorArg::Bgr,
            "gray" => ColorArg::Gray,
            other => bail!("color '{other}' is not rgb, bgr or gray"),
        }),
        mean: Some(list(&input.mean)),
        std: Some(list(&input.std)),
    })
}

/// Dimensions as the model declares them, `?` where open: `[?, 3, ?, ?]`.
fn show(dims: &[Option<i64>]) -> String {
    let dims: Vec<String> = dims
        .iter()
        .map(|d| d.map_or_else(|| "?".to_owned(), |v| v.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Resolves the input spec from the dimensions the model's input declares (`None` where it
/// leaves one open) and the user's flags.
pub fn resolve(dims: &[Option<i64>], args: &InputArgs) -> Result<InputSpec> {
    let shape = show(dims);
    let &[_, a, b, c] = dims else {
        bail!("the backbone's input {shape} is not an image tensor [N, C, H, W] or [N, H, W, C]");
    };
    let is_channels = |d: Option<i64>| d == Some(1) || d == Some(3);
    let layout = match (args.layout, is_channels(a), is_channels(c)) {
        (Some(LayoutArg::Nchw), ..) => Layout::Nchw,
        (Some(LayoutArg::Nhwc), ..) => Layout::Nhwc,
        (None, true, false) => Layout::Nchw,
        (None, false, true) => Layout::Nhwc,
        (None, ..) => bail!(
            "the backbone's input {shape} could be read as nchw or nhwc (or neither); pass --layout"
        ),
    };
    let (channels, height, width) = match layout {
        Layout::Nchw => (a, b, c),
        Layout::Nhwc => (c, a, b),
    };
    let Some(channels) = channels.filter(|&c| is_channels(Some(c))) else {
        bail!(
            "the backbone's input {shape} has {} channels as {layout:?}; 1 (gray) or 3 (rgb, bgr) are supported",
            channels.map_or_else(|| "open".to_owned(), |c| c.to_string())
        );
    };
    let color = match args.color {
        Some(ColorArg::Gray) => Color::Gray,
        Some(ColorArg::Rgb) => Color::Rgb,
        Some(ColorArg::Bgr) => Color::Bgr,
        None if channels == 1 => Color::Gray,
        None => Color::Rgb,
    };
    if color.channels() as i64 != channels {
        bail!(
            "--color needs {} channels, the backbone's input {shape} has {channels}",
            color.channels()
        );
    }
    let size = |flag: &str, given: Option<u32>, model: Option<i64>| -> Result<u32> {
        match (given, model) {
            (Some(v), Some(m)) if i64::from(v) != m => {
                bail!("{flag} {v} differs from the backbone's input {shape}")
            }
            (_, Some(m)) => Ok(u32::try_from(m)?),
            (Some(v), None) => Ok(v),
            (None, None) => bail!("the backbone's input {shape} leaves its size open: give {flag}"),
        }
    };
    Ok(InputSpec {
        layout,
        width: size("--width", args.width, width)?,
        height: size("--height", args.height, height)?,
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

    fn fixed(dims: &[i64]) -> Vec<Option<i64>> {
        dims.iter().map(|&d| Some(d)).collect()
    }

    #[test]
    fn a_size_the_model_leaves_open_comes_from_the_flags() {
        let open = [None, Some(3), None, None];
        let err = resolve(&open, &InputArgs::default()).unwrap_err();
        assert!(err.to_string().contains("--width"), "{err}");
        let args = InputArgs {
            width: Some(40),
            height: Some(30),
            ..InputArgs::default()
        };
        let spec = resolve(&open, &args).unwrap();
        assert_eq!(
            (spec.layout, spec.width, spec.height),
            (Layout::Nchw, 40, 30)
        );
        let nhwc = resolve(&[None, None, None, Some(3)], &args).unwrap();
        assert_eq!(nhwc.shape(), [1, 30, 40, 3]);
        // A fixed size must match the flag still.
        let err = resolve(&[None, Some(3), Some(30), Some(41)], &args).unwrap_err();
        assert!(err.to_string().contains("--width 40 differs"), "{err}");
    }

    #[test]
    fn layout_is_read_from_the_shape_when_only_one_fits() {
        let args = InputArgs::default();
        let nchw = resolve(&fixed(&[1, 1, 28, 28]), &args).unwrap();
        assert_eq!(
            (nchw.layout, nchw.color, nchw.width),
            (Layout::Nchw, Color::Gray, 28)
        );
        assert_eq!(
            (nchw.mean.clone(), nchw.std.clone()),
            (vec![0.0], vec![255.0])
        );
        let nhwc = resolve(&fixed(&[1, 32, 48, 3]), &args).unwrap();
        assert_eq!(
            (nhwc.layout, nhwc.color, nhwc.width, nhwc.height),
            (Layout::Nhwc, Color::Rgb, 48, 32)
        );
    }

    #[test]
    fn an_ambiguous_shape_needs_layout() {
        let err = resolve(&fixed(&[1, 3, 8, 3]), &InputArgs::default()).unwrap_err();
        assert!(err.to_string().contains("--layout"), "{err}");
        let args = InputArgs {
            layout: Some(LayoutArg::Nhwc),
            ..InputArgs::default()
        };
        assert_eq!(
            resolve(&fixed(&[1, 3, 8, 3]), &args).unwrap().layout,
            Layout::Nhwc
        );
    }

    #[test]
    fn mean_and_std_take_one_or_one_per_channel() {
        let args = InputArgs {
            mean: Some("127".into()),
            std: Some("1,2,3".into()),
            ..InputArgs::default()
        };
        let spec = resolve(&fixed(&[1, 3, 4, 4]), &args).unwrap();
        assert_eq!(spec.mean, vec![127.0; 3]);
        assert_eq!(spec.std, vec![1.0, 2.0, 3.0]);
        let bad = InputArgs {
            std: Some("1,2".into()),
            ..InputArgs::default()
        };
        assert!(resolve(&fixed(&[1, 3, 4, 4]), &bad).is_err());
    }
}
