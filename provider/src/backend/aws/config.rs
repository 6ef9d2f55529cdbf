//! AWS configuration of a mount, as the dialects produce it.

/// Which AWS service holds an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Secrets Manager.
    SecretsManager,
    /// SSM Parameter Store.
    Ssm,
}

impl Service {
    /// The `objectType` spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretsManager => "secretsmanager",
            Self::Ssm => "ssmparameter",
        }
    }
}

/// How the pod's identity becomes AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AwsAuth {
    /// IAM Roles for Service Accounts: AssumeRoleWithWebIdentity with the pod's
    /// token for `sts.amazonaws.com`. The role comes from `role_arn` when the
    /// SecretProviderClass sets `roleArn`, else from the service account's
    /// `eks.amazonaws.com/role-arn` annotation.
    Irsa {
        /// `roleArn` override (native dialect only).
        role_arn: Option<String>,
    },
    /// EKS Pod Identity: the pod's token for `pods.eks.amazonaws.com`, sent to the agent.
    PodIdentity {
        /// `preferredAddressType: ipv6`: use the agent's IPv6 address by default.
        prefer_ipv6: bool,
    },
}

impl AwsAuth {
    /// The token audience this method needs.
    #[must_use]
    pub fn audience(&self) -> &'static str {
        match self {
            Self::Irsa { .. } => "sts.amazonaws.com",
            Self::PodIdentity { .. } => "pods.eks.amazonaws.com",
        }
    }
}

/// AWS side of a mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsConfig {
    /// Primary region.
    pub region: String,
    /// The second region (`failoverRegion`).
    pub failover_region: Option<String>,
    /// When the second region is asked.
    pub failover_mode: FailoverMode,
    /// Identity.
    pub auth: AwsAuth,
}

/// When a mount with a `failoverRegion` asks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailoverMode {
    /// As the AWS provider (the `aws` socket): every object is read in both
    /// regions; a 4xx from either fails the mount, and the primary's value wins
    /// when both answer.
    AskBoth,
    /// Courier's native socket: the failover region is asked only when the
    /// primary is unreachable or answers 5xx; a 4xx from the primary is final.
    OnUnavailable,
}

/// Which version of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct VersionSelector {
    /// `objectVersion`: a Secrets Manager VersionId or an SSM version number.
    pub version: Option<String>,
    /// `objectVersionLabel`: a Secrets Manager stage or an SSM label.
    pub label: Option<String>,
}

/// One object in AWS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsObject {
    /// The service.
    pub service: Service,
    /// Name or ARN in the primary region.
    pub name: String,
    /// Version in the primary region.
    pub selector: VersionSelector,
    /// Name and version in the failover region (default: the same).
    pub failover: Option<(String, VersionSelector)>,
    /// `name` is an SSM path whose parameters are all fetched (`expandKeys`).
    pub list_path: bool,
}
