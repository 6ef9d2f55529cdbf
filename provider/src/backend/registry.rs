//! The list of backends, and what it generates: the typed [`Plan`], the
//! [`Settings`] of every backend and the dispatch of a mount to its backend.
//!
//! Adding a backend adds one line to the `backends!` call at the end.

use super::{Backend, Error, ErrorKind, Deps};
use crate::identity::PodIdentity;
use crate::plan::{Fetched, ObjectSpec};

/// A backend's part of a mount's plan: its configuration and, for each object
/// of the mount (in order), where that object comes from in this backend.
#[derive(Debug, Clone)]
pub struct BackendPlan<C, O> {
    /// The mount-wide configuration.
    pub config: C,
    /// One source per object, in the order of the mount's object specs.
    pub objects: Vec<O>,
}

/// Runs `backend` on `plan` once the plan's sources match the specs one to one.
async fn fetch_with<B: Backend>(
    backend: &B,
    plan: &BackendPlan<B::Config, B::Object>,
    identity: &PodIdentity,
    specs: &[ObjectSpec],
) -> Result<Vec<Fetched>, Error> {
    if plan.objects.len() != specs.len() {
        return Err(Error::new(
            ErrorKind::Invalid,
            B::name(&plan.config),
            format!("the plan lists {} objects but {} sources", specs.len(), plan.objects.len()),
        ));
    }
    backend.fetch(plan, identity, specs).await
}

/// Declares the backends: `Variant => module::BackendType`. The module exports
/// `Plan` (its [`BackendPlan`]) and `Settings`, and its backend type implements
/// [`Backend`] with those; the variant names its [`Plan`] case and the module
/// name its [`Settings`] field.
macro_rules! backends {
    ($($variant:ident => $module:ident :: $backend:ident),+ $(,)?) => {
        /// What a mount fetches, typed per backend: a plan of one backend can only
        /// hold that backend's configuration and objects.
        #[derive(Debug, Clone)]
        pub enum Plan {
            $(
                #[doc = concat!("Objects of the `", stringify!($module), "` backend.")]
                $variant(super::$module::Plan),
            )+
        }

        impl Plan {
            /// Short name of the plan's backend, for logs and messages.
            #[must_use]
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(plan) => <super::$module::$backend as Backend>::name(&plan.config),)+
                }
            }
        }

        /// Every backend's tunables, one field per backend module.
        #[derive(Debug)]
        pub struct Settings {
            $(
                #[doc = concat!("Tunables of the `", stringify!($module), "` backend.")]
                pub $module: super::$module::Settings,
            )+
        }

        /// One instance of every backend, with their caches.
        #[derive(Debug)]
        pub(crate) struct Backends {
            $(pub(crate) $module: super::$module::$backend,)+
        }

        impl Backends {
            /// Every backend, with empty caches.
            pub(crate) fn new(settings: Settings, shared: &Deps) -> Self {
                Self { $($module: Backend::new(settings.$module, shared),)+ }
            }

            /// Fetches a mount's objects from the backend its plan is for.
            pub(crate) async fn fetch(
                &self,
                plan: &Plan,
                identity: &PodIdentity,
                specs: &[ObjectSpec],
            ) -> Result<Vec<Fetched>, Error> {
                match plan {
                    $(Plan::$variant(plan) => fetch_with(&self.$module, plan, identity, specs).await,)+
                }
            }
        }
    };
}

// The registration: one line per backend.
backends! {
    Vault => vault::VaultBackend,
    Aws => aws::AwsBackend,
    Gcp => gcp::GcpBackend,
    Azure => azure::AzureBackend,
}
