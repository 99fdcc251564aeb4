//! Which workloads the WasmPlugin applies to when no selector names them.
//!
//! Istio attaches a WasmPlugin without selector (and without targetRefs) to every workload of
//! its namespace (pilot/pkg/model/policyattachment.go: a nil selector selects every workload),
//! and looks for plugins in the proxy's own namespace and in the mesh's root namespace
//! (pilot/pkg/model/push_context.go TrafficExtensionsByListenerInfo): one without selector in
//! the root namespace (meshConfig.rootNamespace, `istio-system` by default) applies to every
//! workload of the mesh. The importer says so in the manifest and on stderr, and writes a
//! mesh-wide plugin only when asked to (`--mesh-wide`).

/// Returns metadata.namespace and, without a selector, the comment saying what the plugin
/// covers. Err: the command line asks for something the importer does not write.
pub fn decide(
    explicit_namespace: Option<&str>,
    configmap_namespace: Option<&str>,
    has_selector: bool,
    mesh_wide: bool,
    root_namespace: &str,
) -> Result<(Option<String>, Option<String>), String> {
    if mesh_wide {
        if has_selector {
            return Err(
                "--mesh-wide with --selector: the selector would limit the plugin to the workloads it names"
                    .to_string(),
            );
        }
        if let Some(ns) = explicit_namespace.filter(|ns| *ns != root_namespace) {
            return Err(format!(
                "--mesh-wide with --namespace {ns}: only a plugin in the root namespace \
                 ({root_namespace}) applies to the whole mesh"
            ));
        }
        return Ok((
            Some(root_namespace.to_string()),
            Some(format!(
                "No selector, in the root namespace {root_namespace} (--mesh-wide): this plugin\n\
                 applies to every workload of the mesh."
            )),
        ));
    }
    let namespace = explicit_namespace.or(configmap_namespace);
    if has_selector {
        return Ok((namespace.map(str::to_string), None));
    }
    match namespace {
        Some(ns) if ns == root_namespace => Err(format!(
            "no --selector in the root namespace {ns}: the WasmPlugin would apply to every \
             workload of the mesh. Name the workloads with --selector KEY=VALUE, or pass \
             --mesh-wide if the whole mesh is meant"
        )),
        Some(ns) => Ok((
            Some(ns.to_string()),
            Some(format!(
                "No selector: this plugin applies to every workload in namespace {ns}."
            )),
        )),
        None => Ok((
            None,
            Some(format!(
                "No selector and no namespace: this plugin applies to every workload of the\n\
                 namespace it is applied in (every workload of the mesh in {root_namespace})."
            )),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "istio-system";

    #[test]
    fn a_selector_needs_no_comment_and_keeps_the_namespace() {
        assert_eq!(
            decide(None, Some("shop"), true, false, ROOT).unwrap(),
            (Some("shop".to_string()), None)
        );
        // A selector in the root namespace selects by label across the mesh: that is explicit.
        assert_eq!(
            decide(Some(ROOT), None, true, false, ROOT).unwrap().0,
            Some(ROOT.to_string())
        );
    }

    #[test]
    fn without_selector_the_namespace_scope_is_written_down() {
        let (ns, scope) = decide(Some("shop"), Some("other"), false, false, ROOT).unwrap();
        assert_eq!(ns.as_deref(), Some("shop"));
        assert!(scope.unwrap().contains("every workload in namespace shop"));
        let (ns, scope) = decide(None, None, false, false, ROOT).unwrap();
        assert_eq!(ns, None);
        assert!(scope
            .unwrap()
            .contains("every workload of the mesh in istio-system"));
    }

    #[test]
    fn mesh_wide_needs_the_flag_and_nothing_that_contradicts_it() {
        let err = decide(None, Some(ROOT), false, false, ROOT).unwrap_err();
        assert!(err.contains("--mesh-wide"), "{err}");
        assert!(decide(Some("mesh"), None, false, false, "mesh").is_err());
        let (ns, scope) = decide(None, Some("shop"), false, true, ROOT).unwrap();
        assert_eq!(ns.as_deref(), Some(ROOT));
        assert!(scope.unwrap().contains("every workload of the mesh"));
        assert!(decide(None, None, true, true, ROOT).is_err());
        assert!(decide(Some("shop"), None, false, true, ROOT).is_err());
    }
}
