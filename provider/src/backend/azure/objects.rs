//! Reading a mount's objects: each distinct read once, concurrently with a
//! bound, and `objectVersionHistory` as the newest enabled versions.

use std::collections::HashMap;

use futures::StreamExt as _;

use super::cloud::Endpoints;
use super::{AzureBackend, AzureObject, BACKEND, MAX_CONCURRENT_REQUESTS, Plan, vault};
use crate::backend::{Error, ErrorKind};
use crate::plan::{Entry, Fetched, ObjectSpec};
use crate::secret::SecretString;

impl AzureBackend {
    /// Reads every object, each distinct read once, concurrently with a bound.
    pub(super) async fn read_all(
        &self,
        plan: &Plan,
        ends: &Endpoints,
        token: &SecretString,
        specs: &[ObjectSpec],
    ) -> Result<Vec<Fetched>, Error> {
        let mut unique: Vec<&AzureObject> = Vec::new();
        for object in &plan.objects {
            if !unique.contains(&object) {
                unique.push(object);
            }
        }
        let label = |object: &AzureObject| {
            plan.objects
                .iter()
                .position(|o| o == object)
                .and_then(|i| specs.get(i))
        };
        let reads: Vec<_> = unique
            .iter()
            .map(|&object| async move {
                let read = self.read_object(ends, token, object).await;
                (
                    object.clone(),
                    read.map_err(|e| match label(object) {
                        Some(spec) => e.for_object(spec),
                        None => e,
                    }),
                )
            })
            .collect();
        let mut values: HashMap<AzureObject, Vec<(String, vault::Value)>> = HashMap::new();
        let mut results = futures::stream::iter(reads).buffer_unordered(MAX_CONCURRENT_REQUESTS);
        while let Some((object, read)) = results.next().await {
            values.insert(object, read?);
        }
        specs
            .iter()
            .zip(&plan.objects)
            .map(|(spec, object)| {
                let read = values.get(object).ok_or_else(|| {
                    Error::new(ErrorKind::Unavailable, BACKEND, "an object was not fetched")
                        .for_object(spec)
                })?;
                Ok(fetched(object, read))
            })
            .collect()
    }

    /// One object: its version, or with `objectVersionHistory` its newest
    /// versions (from `objectVersion` on), named `0..N-1`.
    async fn read_object(
        &self,
        ends: &Endpoints,
        token: &SecretString,
        object: &AzureObject,
    ) -> Result<Vec<(String, vault::Value)>, Error> {
        let Some(history) = object.history else {
            let value = self
                .read(ends, token, object, object.version.as_deref())
                .await?;
            return Ok(vec![(String::new(), value)]);
        };
        let listed = vault::newest_first(self.versions(ends, token, object).await?);
        let start = match &object.version {
            None => 0,
            Some(v) => listed.iter().position(|l| &l.version == v).ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    BACKEND,
                    format!(
                        "objectVersion of {} is not among its enabled versions; check the version",
                        object.describe()
                    ),
                )
            })?,
        };
        let chosen: Vec<_> = listed
            .into_iter()
            .skip(start)
            .take(history as usize)
            .collect();
        if chosen.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                BACKEND,
                format!("{} has no enabled versions", object.describe()),
            ));
        }
        let reads = chosen.iter().enumerate().map(|(i, info)| async move {
            self.read(ends, token, object, Some(&info.version))
                .await
                .map(|value| (i.to_string(), value))
        });
        futures::future::try_join_all(reads).await
    }
}

/// The fetched object: one value, or the history's versions as entries.
fn fetched(object: &AzureObject, read: &[(String, vault::Value)]) -> Fetched {
    match (object.history, read) {
        (None, [(_, value)]) => Fetched::value(value.content.clone(), Some(value.version.clone())),
        _ => {
            let entries = read
                .iter()
                .map(|(name, value)| Entry {
                    name: name.clone(),
                    content: value.content.clone(),
                    version_id: Some(value.version.clone()),
                })
                .collect();
            let versions: Vec<&str> = read.iter().map(|(_, v)| v.version.as_str()).collect();
            Fetched {
                content: crate::secret::SecretBytes::new(Vec::new()),
                version_id: Some(versions.join(",")),
                entries: Some(entries),
            }
        }
    }
}
