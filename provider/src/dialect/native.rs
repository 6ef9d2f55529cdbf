//! Courier's native parameters: the vault-csi-provider keys (both spellings) plus
//! `backend`, which picks the backend (`vault`, the default, or `openbao`).

use std::collections::BTreeMap;

use super::{Defaults, Error, MountPlan, vault};
use crate::backend::vault::Flavor;

pub(super) fn parse(attrs: &BTreeMap<String, String>, defaults: &Defaults) -> Result<MountPlan, Error> {
    let backend = attrs.get("backend").map(|b| b.trim().to_ascii_lowercase()).filter(|b| !b.is_empty());
    let flavor = match backend.as_deref() {
        None | Some("vault") => Flavor::Vault,
        Some("openbao") => Flavor::OpenBao,
        Some(other) => {
            return Err(Error::new("backend", format!("{other:?} is not supported; use vault or openbao")));
        }
    };
    vault::parse(attrs, flavor, defaults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendConfig;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn backend_selects_the_flavor() {
        let d = Defaults { vault_address: "http://127.0.0.1:8200".into() };
        let base = [("roleName", "r"), ("objects", "- {objectName: a, secretPath: s}")];
        let mut a = attrs(&base);
        a.insert("backend".into(), "openbao".into());
        let BackendConfig::Vault(cfg) = parse(&a, &d).expect("valid").backend;
        assert_eq!(cfg.audience, "openbao");
        a.insert("backend".into(), "gcp".into());
        assert_eq!(parse(&a, &d).expect_err("unknown").field, "backend");
        let BackendConfig::Vault(cfg) = parse(&attrs(&base), &d).expect("valid").backend;
        assert_eq!(cfg.audience, "vault");
    }
}
