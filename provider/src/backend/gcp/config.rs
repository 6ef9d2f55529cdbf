//! What a mount asks of Google Cloud: whose credentials, and which resource
//! versions, in Google's own terms.

use std::fmt;

/// Longest location accepted in a resource name (Google's own limit).
pub(crate) const MAX_LOCATION_LEN: usize = 30;

/// Whose credentials read the mount's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GcpAuth {
    /// The pod's own: its token for the workload pool audience, exchanged at STS
    /// and, when the service account names a Google service account, used to
    /// impersonate it (`pod-adc`, the default).
    Pod {
        /// The pool audience the driver's token must carry; `None` takes the
        /// provider's `--gcp-workload-pool`.
        audience: Option<String>,
    },
    /// The provider's own Application Default Credentials (`provider-adc`),
    /// refused unless the operator allows it with `--gcp-allow-provider-adc`:
    /// every pod on the node would read with the same identity.
    ProviderAdc,
}

/// The mount-wide part of a Google Cloud plan.
#[derive(Debug, Clone)]
pub struct GcpConfig {
    /// Whose credentials are used.
    pub(crate) auth: GcpAuth,
}

/// What kind of resource a name points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceKind {
    /// A Secret Manager secret version, read with `:access`.
    Secret,
    /// A Parameter Manager parameter version, read with `:render`.
    Parameter,
}

/// A secret or parameter version, parsed from its full resource name.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    /// Secret or parameter.
    pub(crate) kind: ResourceKind,
    /// The full name as written (`projects/p/secrets/s/versions/latest`).
    pub(crate) name: String,
    /// The location of a regional resource; `None` for a global one.
    pub(crate) location: Option<String>,
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Resource {
    /// Parses `projects/P/secrets/S/versions/V`,
    /// `projects/P/locations/L/secrets/S/versions/V` or
    /// `projects/P/locations/L/parameters/X/versions/V` (location `global` is the
    /// global Parameter Manager endpoint). Every segment must be non-empty.
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        let parts: Vec<&str> = name.split('/').collect();
        let segment_ok = |s: &str| !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        let location = |l: &str| -> Result<String, String> {
            if l.len() > MAX_LOCATION_LEN {
                return Err(format!("location {l:?} is longer than {MAX_LOCATION_LEN} characters"));
            }
            Ok(l.to_owned())
        };
        let (kind, location) = match parts.as_slice() {
            ["projects", p, "secrets", s, "versions", v] if [p, s, v].iter().all(|x| segment_ok(x)) => {
                (ResourceKind::Secret, None)
            }
            ["projects", p, "locations", l, "secrets", s, "versions", v] if [p, l, s, v].iter().all(|x| segment_ok(x)) => {
                (ResourceKind::Secret, Some(location(l)?))
            }
            ["projects", p, "locations", l, "parameters", x, "versions", v] if [p, l, x, v].iter().all(|y| segment_ok(y)) => {
                let location = if *l == "global" { None } else { Some(location(l)?) };
                (ResourceKind::Parameter, location)
            }
            _ => {
                return Err(format!(
                    "{name:?} is not a secret or parameter version; use projects/PROJECT/secrets/SECRET/versions/VERSION, \
                     projects/PROJECT/locations/LOCATION/secrets/SECRET/versions/VERSION or \
                     projects/PROJECT/locations/LOCATION/parameters/PARAMETER/versions/VERSION"
                ));
            }
        };
        Ok(Self { kind, name: name.to_owned(), location })
    }
}

/// Which key of a structured value becomes the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Extract {
    /// `extractJSONKey`: a top-level key of a JSON object, whose value is a string.
    Json(String),
    /// `extractYAMLKey`: a top-level key of a YAML map, whose value is a string.
    Yaml(String),
}

/// Where one object comes from.
#[derive(Debug, Clone)]
pub struct GcpObject {
    /// The secret or parameter version.
    pub(crate) resource: Resource,
    /// The key cut out of the value, if any.
    pub(crate) extract: Option<Extract>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        let global = Resource::parse("projects/p1/secrets/db/versions/latest").expect("global");
        assert_eq!((global.kind, global.location), (ResourceKind::Secret, None));
        let regional = Resource::parse("projects/p1/locations/us-east1/secrets/db/versions/3").expect("regional");
        assert_eq!(regional.location.as_deref(), Some("us-east1"));
        let parameter = Resource::parse("projects/p1/locations/global/parameters/cfg/versions/v1").expect("parameter");
        assert_eq!((parameter.kind, parameter.location), (ResourceKind::Parameter, None));
        for bad in [
            "",
            "projects/p1/secrets/db",
            "projects/p1/secrets//versions/1",
            "prefix/projects/p1/secrets/db/versions/1",
            "projects/p1/secrets/db/versions/1/extra",
            "projects/../secrets/db/versions/1",
            "projects/p1/secrets/db/versions/1?x=y",
            "projects/p1/locations/l/things/db/versions/1",
        ] {
            assert!(Resource::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("projects/p/locations/{}/secrets/s/versions/1", "l".repeat(31));
        assert!(Resource::parse(&long).expect_err("long").contains("longer than 30"));
    }
}
