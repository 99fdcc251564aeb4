//! r4j-import: turns the resilience4j configuration teams already have — a Spring
//! `application.yml`, or Kubernetes manifests with a ConfigMap that embeds one — into the
//! filter's configuration: an Istio `WasmPlugin` and an Envoy ECDS file (plus the bare policy).
//!
//! The policy is validated by the filter's own parser (`Policy::from_json`, the code that runs
//! in Envoy), so what the importer accepts Envoy accepts. Every error and warning is reported by
//! its key path; nothing is dropped silently.
//!
//! ```text
//! cargo run -p r4j-import -- [OPTIONS] INPUT.yaml
//! ```
//! Run with `--help` for the options. Exit status: 0 imported (warnings may have been printed),
//! 1 the policy has errors, 2 the input could not be read or the command line is wrong.

mod advice;
mod emit;
mod legacy;
mod output;
mod scope;
mod spring;
mod upstreams;
mod validate;

fn main() {
    std::process::exit(cli::run(std::env::args().skip(1).collect()));
}

mod cli {
    use std::path::{Path, PathBuf};

    use tools_common::FILTER_WASM;

    use super::advice;
    use super::emit::{self, PluginSettings};
    use super::legacy;
    use super::output::{say, stdout};
    use super::scope;
    use super::spring::{self, Selection};
    use super::upstreams::{self, Mappings};
    use super::validate;

    const USAGE: &str = "\
usage: r4j-import [OPTIONS] INPUT

INPUT is a Spring application.yml (several documents and profiles allowed) or
application.properties, or Kubernetes manifests (one or more documents) with a ConfigMap whose
*.yml / *.yaml / *.properties data holds one.
Its `resilience4j` tree is validated with the filter's own parser and written as:

  --out DIR               DIR/wasmplugin.yaml, DIR/ecds.json, DIR/policy.json
  --wasmplugin FILE       the Istio WasmPlugin ('-' = stdout; the default without --out)
  --ecds FILE             the Envoy ECDS file (a DiscoveryResponse, as envoy/bootstrap.yaml reads)
  --policy FILE           the filter's configuration as JSON (what envoy/policy.json holds)

Selecting the input:
  --configmap NAME[/KEY]  the ConfigMap (and data key) to read when several hold resilience4j
  --profile NAME          an active Spring profile (repeatable)
  --resilience4j-1x       the service runs resilience4j 1.x: read max-retry-attempts and
                          ring-buffer-size-in-* with their 1.x meaning. Without it they are
                          ignored, as resilience4j 2.x (Spring Boot 3) ignores them
  --skip-unsupported      drop resilience4j modules the filter does not implement (scheduled,
                          micrometer, ...) with a warning each, instead of failing
  --filter-keys FILE      JSON or YAML with the filter's own keys (fallbacks, upstreams,
                          retry-options, events) to put beside resilience4j
  --upstream INSTANCE=SERVICE
                          the upstream an instance guards (repeatable), written into
                          `upstreams`: a Kubernetes service (every Istio outbound cluster of
                          it), an Istio host or an Envoy cluster. Without it an instance guards
                          the cluster / service of its own name; the importer says which, per
                          instance, and warns for names no Kubernetes service can have

The WasmPlugin:
  --name NAME             metadata.name (default sidecar-resilience)
  --namespace NS          metadata.namespace (default: the ConfigMap's, else none)
  --selector KEY=VALUE    spec.selector.matchLabels entry (repeatable). Without one the plugin
                          applies to every workload of its namespace, and in the root namespace
                          to every workload of the mesh, which needs --mesh-wide
  --mesh-wide             no selector, in the root namespace: every workload of the mesh
  --root-namespace NS     the mesh's root namespace (meshConfig.rootNamespace; default
                          istio-system)
  --url URL               spec.url (default oci://registry.example.com/sidecar-resilience:VERSION)
  --sha256 HEX            spec.sha256: the OCI image's manifest digest (what Istio verifies), or
                          an http(s) module's sha256. Not with a file:// url: Istio checks none

The ECDS file:
  --wasm PATH             the module Envoy loads (default {FILTER_WASM}, made absolute)
";

    fn usage() -> String {
        USAGE.replace("{FILTER_WASM}", FILTER_WASM)
    }

    struct Options {
        input: Option<PathBuf>,
        out: Option<PathBuf>,
        wasmplugin: Option<String>,
        ecds: Option<PathBuf>,
        policy: Option<PathBuf>,
        selection: Selection,
        skip_unsupported: bool,
        resilience4j_1x: bool,
        filter_keys: Option<PathBuf>,
        upstreams: Mappings,
        plugin: PluginSettings,
        namespace: Option<String>,
        mesh_wide: bool,
        root_namespace: String,
        wasm: Option<PathBuf>,
    }

    fn parse_args(args: Vec<String>) -> Result<Options, String> {
        let mut o = Options {
            input: None,
            out: None,
            wasmplugin: None,
            ecds: None,
            policy: None,
            selection: Selection::default(),
            skip_unsupported: false,
            resilience4j_1x: false,
            filter_keys: None,
            upstreams: Mappings::default(),
            plugin: PluginSettings::default(),
            namespace: None,
            mesh_wide: false,
            root_namespace: "istio-system".to_string(),
            wasm: None,
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "-h" | "--help" => return Err(String::new()),
                "--out" => o.out = Some(value("--out")?.into()),
                "--wasmplugin" => o.wasmplugin = Some(value("--wasmplugin")?),
                "--ecds" => o.ecds = Some(value("--ecds")?.into()),
                "--policy" => o.policy = Some(value("--policy")?.into()),
                "--configmap" => {
                    let profiles = std::mem::take(&mut o.selection.profiles);
                    o.selection = Selection::parse_configmap(&value("--configmap")?);
                    o.selection.profiles = profiles;
                }
                "--profile" => o.selection.profiles.push(value("--profile")?),
                "--skip-unsupported" => o.skip_unsupported = true,
                "--resilience4j-1x" => o.resilience4j_1x = true,
                "--filter-keys" => o.filter_keys = Some(value("--filter-keys")?.into()),
                "--upstream" => o.upstreams.add(&value("--upstream")?)?,
                "--name" => o.plugin.name = value("--name")?,
                "--namespace" => o.namespace = Some(value("--namespace")?),
                "--mesh-wide" => o.mesh_wide = true,
                "--root-namespace" => o.root_namespace = value("--root-namespace")?,
                "--selector" => {
                    let v = value("--selector")?;
                    let (k, val) = v
                        .split_once('=')
                        .ok_or_else(|| format!("--selector {v}: expected KEY=VALUE"))?;
                    o.plugin.selector.push((k.to_string(), val.to_string()));
                }
                "--url" => o.plugin.url = value("--url")?,
                "--sha256" => {
                    let v = value("--sha256")?.to_ascii_lowercase();
                    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(format!("--sha256 {v}: expected 64 hex digits"));
                    }
                    o.plugin.sha256 = Some(v);
                }
                "--wasm" => o.wasm = Some(value("--wasm")?.into()),
                a if a.starts_with('-') && a != "-" => return Err(format!("unknown option {a}")),
                _ if o.input.is_some() => return Err("only one INPUT".to_string()),
                _ => o.input = Some(arg.into()),
            }
        }
        if o.input.is_none() {
            return Err("INPUT missing".to_string());
        }
        Ok(o)
    }

    pub fn run(args: Vec<String>) -> i32 {
        let options = match parse_args(args) {
            Ok(o) => o,
            Err(e) if e.is_empty() => {
                stdout(&usage());
                return 0;
            }
            Err(e) => {
                say(&format!("{e}\n\n{}", usage()));
                return 2;
            }
        };
        match import(options) {
            Ok(code) => code,
            Err(e) => {
                say(&format!("error: {e}"));
                2
            }
        }
    }

    fn read(path: &Path) -> Result<String, String> {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("reading stdin: {e}"))?;
            return Ok(text);
        }
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
    }

    fn import(mut o: Options) -> Result<i32, String> {
        let input = o.input.clone().unwrap_or_default();
        let text = read(&input)?;
        let name = input.display().to_string();
        let extracted = spring::extract(&text, &name, &o.selection).map_err(|e| e.to_string())?;
        for note in &extracted.notes {
            say(&format!("note: {note}"));
        }
        say(&format!("read resilience4j from {}", extracted.source));

        let extra = match &o.filter_keys {
            Some(path) => {
                let text = read(path)?;
                let extracted = spring::extract_plain(&text, &path.display().to_string())
                    .map_err(|e| e.to_string())?;
                Some(extracted)
            }
            None => None,
        };
        let extra = o.upstreams.merge_into(extra)?;
        let mut tree = extracted.tree.clone();
        let removed_keys = legacy::apply(&mut tree, o.resilience4j_1x);
        if o.resilience4j_1x {
            for line in &removed_keys {
                say(&format!("note: {line}"));
            }
        }
        let mut report = validate::validate(tree, extra, o.skip_unsupported);
        let (notes, warnings) = advice::sort(std::mem::take(&mut report.warnings));
        for note in &notes {
            say(&format!("note: {note}"));
        }
        for warning in &warnings {
            say(&format!("warning: {warning}"));
        }
        if !o.resilience4j_1x && !removed_keys.is_empty() {
            say(&format!(
                "note: {} key(s) removed in resilience4j 2.0 were ignored, as a resilience4j \
                 2.x service (Spring Boot 3) ignores them; if this service still runs \
                 resilience4j 1.x, import with --resilience4j-1x to read them as 1.x did",
                removed_keys.len()
            ));
        }
        for error in &report.errors {
            say(&format!("error: {error}"));
        }
        let Some(policy) = report.policy else {
            say(&format!(
                "{} error(s); nothing written (the filter would reject this policy)",
                report.errors.len()
            ));
            return Ok(1);
        };
        if let Ok(parsed) = sidecar_resilience::policy::Policy::from_json(&policy.to_string()) {
            let guards = upstreams::report(&parsed);
            for note in &guards.notes {
                say(&format!("note: {note}"));
            }
            for warning in &guards.warnings {
                say(&format!("warning: {warning}"));
            }
        }

        if o.plugin.sha256.is_some() && o.plugin.url.starts_with("file:") {
            return Err(format!(
                "--sha256 with the file:// url {}: Istio checks no sha256 for a file \
                 (it becomes a local data source with the path only)",
                o.plugin.url
            ));
        }
        let (namespace, scope) = scope::decide(
            o.namespace.as_deref(),
            extracted.namespace.as_deref(),
            !o.plugin.selector.is_empty(),
            o.mesh_wide,
            &o.root_namespace,
        )?;
        if let Some(scope) = &scope {
            say(&format!("note: {}", scope.replace('\n', " ")));
        }
        o.plugin.namespace = namespace;
        o.plugin.scope = scope;
        o.plugin.source = extracted.source.clone();
        let wasm = absolute(o.wasm.clone().unwrap_or_else(|| PathBuf::from(FILTER_WASM)));

        let plugin_yaml = emit::wasm_plugin(&o.plugin, &policy)?;
        let ecds = emit::ecds_file(&wasm, &policy);
        let policy_text = format!("{}\n", pretty(&policy));

        let mut wrote = Vec::new();
        if let Some(dir) = &o.out {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            write(&dir.join("wasmplugin.yaml"), &plugin_yaml, &mut wrote)?;
            write(&dir.join("ecds.json"), &ecds, &mut wrote)?;
            write(&dir.join("policy.json"), &policy_text, &mut wrote)?;
        }
        if let Some(p) = &o.ecds {
            write(p, &ecds, &mut wrote)?;
        }
        if let Some(p) = &o.policy {
            write(p, &policy_text, &mut wrote)?;
        }
        match o.wasmplugin.as_deref() {
            Some("-") => stdout(&plugin_yaml),
            Some(p) => write(Path::new(p), &plugin_yaml, &mut wrote)?,
            None if o.out.is_none() => stdout(&plugin_yaml),
            None => {}
        }
        for w in wrote {
            say(&format!("wrote {w}"));
        }
        Ok(0)
    }

    fn pretty(v: &serde_json::Value) -> String {
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    }

    fn absolute(p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            return p;
        }
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }

    /// Atomic (temp file + rename): an ECDS file Envoy watches must never be seen half written.
    fn write(path: &Path, text: &str, wrote: &mut Vec<String>) -> Result<(), String> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("renaming to {}: {e}", path.display()))?;
        wrote.push(path.display().to_string());
        Ok(())
    }
}
