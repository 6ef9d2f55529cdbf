//! The Azure backend's command-line flags, flattened into the provider's own
//! (`main.rs` stays wiring only and short).

use std::path::PathBuf;

use super::{AzureSettings, DEFAULT_AZURE_ANNOTATION_CACHE};

/// Flags of the Azure Key Vault backend.
#[derive(Debug, Clone, clap::Args)]
pub struct AzureArgs {
    /// Entra's authority host for every cloud (the Azure SDKs' `AZURE_AUTHORITY_HOST`); by default
    /// the cloud's (`https://login.microsoftonline.com/` for AzurePublicCloud).
    #[arg(long = "azure-authority-host", env = "AZURE_AUTHORITY_HOST")]
    pub authority_host: Option<String>,

    /// Key Vault's address with `{vault}` standing for the vault name (private endpoints, tests);
    /// by default the cloud's (`https://{vault}.vault.azure.net`).
    #[arg(
        long = "azure-keyvault-endpoint",
        env = "COURIER_AZURE_KEYVAULT_ENDPOINT"
    )]
    pub keyvault_endpoint: Option<String>,

    /// PEM file of extra CA certificates trusted for Entra and Key Vault (private endpoints).
    #[arg(long = "azure-ca-file", env = "COURIER_AZURE_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Directory that `cloudEnvFileName` files (AzureStackCloud) may be read from; without it,
    /// custom cloud files are refused.
    #[arg(long = "azure-cloud-env-dir", env = "COURIER_AZURE_CLOUD_ENV_DIR")]
    pub cloud_env_dir: Option<PathBuf>,

    /// Allow the Azure provider's `nodePublishSecretRef` mode: a volume's Secret with `clientid`
    /// and `clientsecret` logs in as that service principal instead of the pod's workload identity.
    #[arg(long = "azure-allow-node-publish-secret", env = "COURIER_AZURE_ALLOW_NODE_PUBLISH_SECRET",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_node_publish_secret: bool,

    /// Order the certificates of a PKCS#12 certificate leaf, intermediates, root when writing it as
    /// PEM (the Azure provider's `--construct-pem-chain`).
    #[arg(long = "azure-construct-pem-chain", env = "COURIER_AZURE_CONSTRUCT_PEM_CHAIN",
          default_value_t = true, action = clap::ArgAction::Set)]
    pub construct_pem_chain: bool,
}

impl AzureArgs {
    /// The backend's settings, with `concurrency` requests to Azure at most.
    #[must_use]
    pub fn settings(&self, concurrency: usize) -> AzureSettings {
        let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        AzureSettings {
            authority_host: nonempty(&self.authority_host),
            keyvault_endpoint: nonempty(&self.keyvault_endpoint),
            ca_file: self.ca_file.clone().filter(|p| !p.as_os_str().is_empty()),
            cloud_env_dir: self
                .cloud_env_dir
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            allow_node_publish_secret: self.allow_node_publish_secret,
            construct_pem_chain: self.construct_pem_chain,
            annotation_cache: DEFAULT_AZURE_ANNOTATION_CACHE,
            concurrency,
        }
    }
}
