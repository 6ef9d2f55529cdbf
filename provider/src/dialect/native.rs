//! Courier's native parameters: `backend` picks the backend (`vault`, the default,
//! `openbao`, `aws`, `gcp` or `azure`); the other keys are those of the chosen
//! backend's provider (vault-csi-provider keys in their `vault*`, `openbao*` and
//! `bao*` spellings, the AWS provider's keys plus `roleArn`, the GCP provider's,
//! or the Azure provider's).

use std::collections::BTreeMap;

use super::{Defaults, Error, MountPlan, aws, azure, gcp, vault};
use crate::backend::vault::Flavor;

pub(super) fn parse(attrs: &BTreeMap<String, String>, defaults: &Defaults) -> Result<MountPlan, Error> {
    let backend = attrs.get("backend").map(|b| b.trim().to_ascii_lowercase()).filter(|b| !b.is_empty());
    let flavor = match backend.as_deref() {
        None | Some("vault") => Flavor::Vault,
        Some("openbao") => Flavor::OpenBao,
        Some("aws") => return aws::parse(attrs, aws::Flavor::Native, defaults),
        Some("gcp") => return gcp::parse(attrs),
        Some("azure") => return azure::parse(attrs),
        Some(other) => {
            return Err(Error::new("backend", format!("{other:?} is not supported; use vault, openbao, aws, gcp or azure")));
        }
    };
    vault::parse(attrs, flavor, vault::Socket::Native, defaults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Plan;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn backend_selects_the_flavor() {
        let d = Defaults { vault_address: "http://127.0.0.1:8200".into(), aws_region: Some("us-east-1".into()) };
        let base = [("roleName", "r"), ("objects", "- {objectName: a, secretPath: s}")];
        let mut a = attrs(&base);
        a.insert("backend".into(), "openbao".into());
        let Plan::Vault(vault) = parse(&a, &d).expect("valid").backend else { panic!("vault") };
        assert_eq!(vault.config.audience, "openbao");
        a.insert("backend".into(), "azure-blob".into());
        assert_eq!(parse(&a, &d).expect_err("unknown").field, "backend");
        let gcp_attrs = attrs(&[("backend", "gcp"), ("secrets", "- {resourceName: projects/p/secrets/s/versions/1, path: s}")]);
        assert!(matches!(parse(&gcp_attrs, &d).expect("valid").backend, Plan::Gcp(_)));
        let Plan::Vault(vault) = parse(&attrs(&base), &d).expect("valid").backend else { panic!("vault") };
        assert_eq!(vault.config.audience, "vault");
        let aws_attrs = attrs(&[("backend", "aws"), ("objects", "- {objectName: a, objectType: ssmparameter}")]);
        assert!(matches!(parse(&aws_attrs, &d).expect("valid").backend, Plan::Aws(_)));
        let azure_attrs = attrs(&[("backend", "azure"), ("keyvaultName", "kv1"), ("objects", "array:\n  - |\n    objectName: s\n    objectType: secret\n")]);
        assert!(matches!(parse(&azure_attrs, &d).expect("valid").backend, Plan::Azure(_)));
    }
}
