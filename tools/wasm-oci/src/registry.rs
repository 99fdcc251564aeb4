//! Pushing to a registry through the OCI distribution API: blobs (monolithic upload, skipped
//! when already present), then the manifest by tag (or by digest when the reference has none).
//! Auth: a 401 with `WWW-Authenticate: Basic` is answered with the credentials, one with
//! `Bearer realm=...,service=...` by fetching a token from the realm, then the request is
//! repeated once.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use std::time::Duration;

use ureq::http::Response;
use ureq::{Agent, Body};

use super::image::{Image, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};

#[derive(Debug, Clone)]
pub struct Reference {
    /// `host[:port]`
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
}

impl Reference {
    /// `HOST[:PORT]/REPO[:TAG]` (an `oci://` prefix is allowed).
    pub fn parse(text: &str) -> Result<Reference, String> {
        let bad = || format!("image reference {text:?}: expected HOST[:PORT]/REPO[:TAG]");
        let text = text.strip_prefix("oci://").unwrap_or(text);
        let (registry, rest) = text.split_once('/').ok_or_else(bad)?;
        if registry.is_empty() || rest.is_empty() || rest.contains('@') {
            return Err(bad());
        }
        // A colon after the last slash separates the tag.
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (rest, None),
        };
        if repository.is_empty() || tag.as_deref() == Some("") {
            return Err(bad());
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
        })
    }

    pub fn repository_path(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    pub fn display(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{t}", self.repository_path()),
            None => self.repository_path(),
        }
    }

    fn is_loopback(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

/// Builds one request and sends it; called again with the new Authorization after a 401.
type MakeRequest<'a> = &'a dyn Fn(&Agent, Option<&str>) -> Result<Response<Body>, ureq::Error>;

pub struct Client {
    agent: Agent,
    base: String,
    reference: Reference,
    auth: std::cell::RefCell<Option<String>>,
}

fn status_error(what: &str, response: &mut Response<Body>) -> String {
    let body = response.body_mut().read_to_string().unwrap_or_default();
    format!("{what}: HTTP {} {}", response.status(), body.trim())
}

impl Client {
    pub fn new(reference: &Reference, plain_http: bool) -> Client {
        let scheme = if plain_http || reference.is_loopback() {
            "http"
        } else {
            "https"
        };
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build();
        Client {
            agent: Agent::new_with_config(config),
            base: format!("{scheme}://{}", reference.registry),
            reference: reference.clone(),
            auth: std::cell::RefCell::new(None),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.reference.repository)
    }

    /// Sends a request built by `make` (called again after authenticating on a 401).
    fn send(&self, what: &str, make: MakeRequest<'_>) -> Result<Response<Body>, String> {
        let auth = self.auth.borrow().clone();
        let response = make(&self.agent, auth.as_deref()).map_err(|e| format!("{what}: {e}"))?;
        if response.status() != 401 || auth.is_some() {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let header = self.authenticate(&challenge)?;
        *self.auth.borrow_mut() = Some(header.clone());
        make(&self.agent, Some(&header)).map_err(|e| format!("{what}: {e}"))
    }

    fn credentials() -> Option<(String, String)> {
        let user = std::env::var("REGISTRY_USERNAME")
            .ok()
            .filter(|u| !u.is_empty())?;
        let password = std::env::var("REGISTRY_PASSWORD").unwrap_or_default();
        Some((user, password))
    }

    fn authenticate(&self, challenge: &str) -> Result<String, String> {
        let basic = Self::credentials().map(|(u, p)| basic_auth(&u, &p));
        let lower = challenge.to_ascii_lowercase();
        if lower.starts_with("basic") {
            return basic.ok_or_else(|| {
                "registry wants credentials: set REGISTRY_USERNAME and REGISTRY_PASSWORD"
                    .to_string()
            });
        }
        if !lower.starts_with("bearer") {
            return Err(format!(
                "registry answered 401 with an unknown challenge {challenge:?}"
            ));
        }
        let param = |name: &str| -> Option<String> {
            let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
            let end = challenge[start..].find('"')? + start;
            Some(challenge[start..end].to_string())
        };
        let realm =
            param("realm").ok_or_else(|| format!("Bearer challenge without realm: {challenge}"))?;
        let mut query = vec![format!(
            "scope=repository:{}:pull,push",
            self.reference.repository
        )];
        if let Some(service) = param("service") {
            query.push(format!("service={service}"));
        }
        let url = format!("{realm}?{}", query.join("&"));
        let mut request = self.agent.get(&url);
        if let Some(b) = &basic {
            request = request.header("Authorization", b);
        }
        let mut response = request
            .call()
            .map_err(|e| format!("token from {realm}: {e}"))?;
        if response.status() != 200 {
            return Err(status_error(&format!("token from {realm}"), &mut response));
        }
        let body: serde_json::Value = serde_json::from_str(
            &response
                .body_mut()
                .read_to_string()
                .map_err(|e| format!("token: {e}"))?,
        )
        .map_err(|e| format!("token: {e}"))?;
        let token = body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .ok_or_else(|| "token response without a token".to_string())?;
        Ok(format!("Bearer {token}"))
    }

    fn push_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), String> {
        let head = self.send(&format!("HEAD blob {digest}"), &|agent, auth| {
            let mut r = agent.head(&self.url(&format!("blobs/{digest}")));
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.call()
        })?;
        if head.status() == 200 {
            return Ok(());
        }
        let mut start = self.send("starting blob upload", &|agent, auth| {
            let mut r = agent.post(&self.url("blobs/uploads/"));
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send_empty()
        })?;
        if start.status() != 202 {
            return Err(status_error("starting blob upload", &mut start));
        }
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| "blob upload: no Location".to_string())?;
        let location = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={digest}");
        let mut put = self.send(&format!("uploading blob {digest}"), &|agent, auth| {
            let mut r = agent
                .put(&put_url)
                .header("Content-Type", "application/octet-stream");
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send(bytes)
        })?;
        if put.status() != 201 {
            return Err(status_error(&format!("uploading blob {digest}"), &mut put));
        }
        Ok(())
    }

    /// Pushes the image; returns the manifest digest the registry reports.
    pub fn push(&self, image: &Image) -> Result<String, String> {
        self.push_blob(&image.layer_digest, &image.layer)?;
        self.push_blob(&image.config_digest, &image.config)?;
        let target = self
            .reference
            .tag
            .clone()
            .unwrap_or_else(|| image.manifest_digest.clone());
        let mut put = self.send("uploading manifest", &|agent, auth| {
            let mut r = agent
                .put(&self.url(&format!("manifests/{target}")))
                .header("Content-Type", MANIFEST_MEDIA_TYPE);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send(&image.manifest[..])
        })?;
        if put.status() != 201 {
            return Err(status_error("uploading manifest", &mut put));
        }
        let reported = put
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| image.manifest_digest.clone());
        if reported != image.manifest_digest {
            return Err(format!(
                "registry stored the manifest as {reported}, expected {} (media type {CONFIG_MEDIA_TYPE} rewritten?)",
                image.manifest_digest
            ));
        }
        Ok(reported)
    }
}

/// An `Authorization` value for HTTP Basic authentication (RFC 7617).
fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("127.0.0.1:5000/team/sidecar-resilience:0.1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/sidecar-resilience", Some("0.1.0"))
        );
        assert!(r.is_loopback());
        let r = Reference::parse("oci://registry.example.com/x").unwrap();
        assert_eq!((r.tag.clone(), r.is_loopback()), (None, false));
        assert!(Reference::parse("nohost").is_err());
        assert!(Reference::parse("h/x@sha256:00").is_err());
    }

    #[test]
    fn basic_auth_is_rfc7617() {
        assert_eq!(basic_auth("user", "pass"), "Basic dXNlcjpwYXNz");
    }
}
