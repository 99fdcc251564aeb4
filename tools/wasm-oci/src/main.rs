//! wasm-oci: packages the filter as an OCI image the way Istio pulls Wasm plugins, and pushes it
//! to a registry — no docker engine involved.
//!
//! The image follows the Wasm OCI image spec (the variant Istio's image fetcher calls "OCI
//! spec compliant"): an OCI image manifest whose config has media type
//! `application/vnd.module.wasm.config.v1+json` and whose single layer is the module itself,
//! media type `application/vnd.module.wasm.content.layer.v1+wasm`. Nothing time-dependent goes
//! into it, so the same .wasm always gives the same manifest digest.
//!
//! ```text
//! wasm-oci build [--wasm FILE] [--out DIR] [--image REF] [--push] [--plain-http] [--istio DIR]
//! ```
//! - writes the image as an OCI image layout (`DIR/layout`: oci-layout, index.json, blobs/);
//! - writes the WasmPlugins under `--istio` (default `istio/`, which apply as committed) into
//!   `DIR/istio/` pinned to this image: url oci://REF, sha256 the manifest digest (what Istio
//!   verifies for an OCI url); file:// modules are copied as is (pin.rs);
//! - with `--push`, pushes blobs and manifest to REF (`HOST[:PORT]/REPO[:TAG]`) through the OCI
//!   distribution API. Loopback registries are spoken to in plain HTTP, others in HTTPS unless
//!   `--plain-http`. Credentials, if the registry wants them (Basic or Bearer token), come from
//!   `REGISTRY_USERNAME` / `REGISTRY_PASSWORD`.
//!
//! Prints `digest sha256:...` and, after a push, `pushed REF@sha256:...`.

mod image;
mod pin;
mod registry;

fn main() {
    std::process::exit(match run(std::env::args().skip(1).collect()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wasm-oci: error: {e}");
            1
        }
    });
}

const USAGE: &str = "usage: wasm-oci build [--wasm FILE] [--out DIR] [--image HOST[:PORT]/REPO[:TAG]] [--push] [--plain-http] [--istio DIR]";

fn run(args: Vec<String>) -> Result<(), String> {
    use std::path::PathBuf;

    let mut it = args.into_iter();
    match it.next().as_deref() {
        Some("build") => {}
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => return Err(USAGE.to_string()),
    }
    let mut wasm = PathBuf::from(tools_common::FILTER_WASM);
    let mut out = PathBuf::from("target/oci");
    let mut image: Option<String> = None;
    let mut push = false;
    let mut plain_http = false;
    let mut istio = PathBuf::from("istio");
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--wasm" => wasm = value("--wasm")?.into(),
            "--out" => out = value("--out")?.into(),
            "--image" => image = Some(value("--image")?),
            "--push" => push = true,
            "--plain-http" => plain_http = true,
            "--istio" => istio = value("--istio")?.into(),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let module = std::fs::read(&wasm).map_err(|e| {
        format!(
            "reading {}: {e} (build it with `make wasm`)",
            wasm.display()
        )
    })?;
    if !module.starts_with(b"\0asm") {
        return Err(format!("{} is not a Wasm module", wasm.display()));
    }
    let title = wasm
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("plugin.wasm")
        .to_string();
    let built = image::Image::new(module, &title);
    let layout = out.join("layout");
    built.write_layout(&layout, image.as_deref())?;
    println!("layout {}", layout.display());
    println!("digest {}", built.manifest_digest);

    let reference = match &image {
        Some(r) => Some(registry::Reference::parse(r)?),
        None => None,
    };
    let image_url = match &reference {
        Some(r) => format!("oci://{}", r.display()),
        None => format!(
            "oci://registry.example.com/sidecar-resilience:{}",
            env!("CARGO_PKG_VERSION")
        ),
    };
    let rendered = pin::render_istio(
        &istio,
        &out.join("istio"),
        &image_url,
        image::hex_of(&built.manifest_digest),
    )?;
    for file in rendered {
        println!("rendered {}", file.display());
    }

    if push {
        let Some(reference) = reference else {
            return Err("--push needs --image HOST[:PORT]/REPO[:TAG]".to_string());
        };
        let client = registry::Client::new(&reference, plain_http);
        let digest = client.push(&built)?;
        println!("pushed {}@{digest}", reference.repository_path());
    }
    Ok(())
}
