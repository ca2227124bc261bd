//! A local RTSP server, for trying `pipelines/rtsp.sh` without a camera: a live H.264 test
//! pattern at `rtsp://127.0.0.1:PORT/test`, over UDP or TCP as the client asks. It runs until it
//! is killed. The reconnection test kills and restarts it as a camera drops and returns.
//!
//! ```text
//! cargo run --release --example rtsp_server -- [PORT] [WIDTHxHEIGHT@FPS]
//! ```

use anyhow::{Context, Result, bail};
use gst_rtsp_server::prelude::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, format) = match args.as_slice() {
        [] => ("8554", "320x240@25"),
        [port] => (port.as_str(), "320x240@25"),
        [port, format] => (port.as_str(), format.as_str()),
        _ => bail!("usage: rtsp_server [PORT] [WIDTHxHEIGHT@FPS]"),
    };
    let port: u16 = port.parse().with_context(|| format!("PORT: {port:?}"))?;
    let (size, fps) = format
        .split_once('@')
        .with_context(|| format!("expected WIDTHxHEIGHT@FPS, got {format:?}"))?;
    let (width, height) = size
        .split_once('x')
        .with_context(|| format!("expected WIDTHxHEIGHT@FPS, got {format:?}"))?;
    let [width, height, fps] = [width, height, fps].map(str::parse::<u32>);
    let (width, height, fps) = (width?, height?, fps?);

    gst::init()?;
    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port.to_string());
    let factory = gst_rtsp_server::RTSPMediaFactory::new();
    // One key frame a second, so that a client that joins or comes back decodes within a second.
    factory.set_launch(&format!(
        "( videotestsrc is-live=true pattern=ball \
           ! video/x-raw,width={width},height={height},framerate={fps}/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} \
           ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    ));
    // Every client gets the same stream, as from a camera.
    factory.set_shared(true);
    server
        .mount_points()
        .context("the server has no mount points")?
        .add_factory("/test", factory);
    let main_loop = gst::glib::MainLoop::new(None, false);
    let _source = server
        .attach(None)
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    println!("rtsp://127.0.0.1:{}/test", server.bound_port());
    main_loop.run();
    Ok(())
}
