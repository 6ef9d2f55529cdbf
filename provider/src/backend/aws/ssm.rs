//! SSM Parameter Store: parameters by name in batches of ten, and every
//! parameter under a path.

use super::errors::{Failure, classify};
use super::{AwsBackend, AwsConfig, AwsObject, BACKEND, Clients, FailoverMode, SSM_BATCH, VersionSelector, report};
use crate::backend::{Error, ErrorKind};
use crate::plan::{Fetched, ObjectSpec};
use crate::secret::SecretBytes;

impl AwsBackend {
    /// A batch of parameters by name, from the primary region or (as the
    /// failover mode says) the failover region.
    pub(super) async fn parameters(&self, clients: &Clients, cfg: &AwsConfig, batch: &[(usize, &ObjectSpec, &AwsObject)]) -> Result<Vec<(usize, Fetched)>, Error> {
        let mut attempts: Vec<(String, String, Failure)> = Vec::new();
        let primary =
            batch.iter().map(|&(i, spec, obj)| (i, spec, obj.name.clone(), ssm_name(&obj.name, &obj.selector))).collect::<Vec<_>>();
        let mut targets = vec![(&clients.primary_ssm, cfg.region.as_str(), primary)];
        if let (Some(client), Some(region)) = (clients.failover_ssm.as_ref(), cfg.failover_region.as_deref()) {
            let names = batch
                .iter()
                .map(|&(i, spec, obj)| {
                    let (name, selector) = obj.failover.as_ref().map_or((&obj.name, &obj.selector), |(n, s)| (n, s));
                    (i, spec, name.clone(), ssm_name(name, selector))
                })
                .collect();
            targets.push((client, region, names));
        }
        let ask_both = cfg.failover_mode == FailoverMode::AskBoth;
        let mut found: Option<Vec<(usize, Fetched)>> = None;
        for (client, region, names) in targets {
            let _permit = self.permit().await?;
            let started = std::time::Instant::now();
            let result = client
                .get_parameters()
                .set_names(Some(names.iter().map(|(_, _, _, n)| n.clone()).collect()))
                .with_decryption(true)
                .send()
                .await;
            self.count("read", result.is_ok(), started);
            match result {
                Ok(output) => {
                    let missing = output.invalid_parameters();
                    if !missing.is_empty() {
                        let objects: Vec<String> = names
                            .iter()
                            .filter(|(_, _, _, n)| missing.contains(n))
                            .map(|(_, spec, _, n)| format!("objects[{}] {n:?}", spec.index))
                            .collect();
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            BACKEND,
                            format!("SSM parameters not found in {region}: {}", objects.join(", ")),
                        ));
                    }
                    let mut out = Vec::with_capacity(names.len());
                    // Each batch names a parameter once, so the answer for a base name
                    // (or ARN) is unambiguous whatever selector was asked for.
                    for (i, spec, base, requested) in &names {
                        let found = output
                            .parameters()
                            .iter()
                            .find(|p| p.name() == Some(base.as_str()) || p.arn() == Some(base.as_str()));
                        let Some(parameter) = found else {
                            return Err(Error::new(ErrorKind::NotFound, BACKEND, format!("parameter {requested} was not returned by {region}")).for_object(spec));
                        };
                        out.push((
                            *i,
                            Fetched::value(
                                SecretBytes::new(parameter.value().unwrap_or_default().as_bytes().to_vec()),
                                Some(parameter.version().to_string()),
                            ),
                        ));
                    }
                    if !ask_both {
                        return Ok(out);
                    }
                    found.get_or_insert(out);
                }
                Err(e) => {
                    let failure = classify(e);
                    let stop = !failure.failover;
                    let listed = names.iter().map(|(_, _, _, n)| n.as_str()).collect::<Vec<_>>().join(", ");
                    attempts.push((region.to_owned(), listed, failure));
                    if stop {
                        found = None;
                        break;
                    }
                }
            }
        }
        if let Some(out) = found {
            return Ok(out);
        }
        let first = batch.first().map(|(_, spec, _)| *spec);
        Err(match first {
            Some(spec) => report("GetParameters", spec, attempts),
            None => Error::new(ErrorKind::Unavailable, BACKEND, "empty SSM batch"),
        })
    }
}

impl AwsBackend {
    /// Every parameter under an SSM path (recursively, all pages), named relative to it.
    pub(super) async fn parameter_path(&self, clients: &Clients, cfg: &AwsConfig, spec: &ObjectSpec, obj: &AwsObject) -> Result<Fetched, Error> {
        let mut attempts = Vec::new();
        let mut targets = vec![(&clients.primary_ssm, cfg.region.as_str(), obj.name.clone())];
        if let (Some(client), Some(region)) = (clients.failover_ssm.as_ref(), cfg.failover_region.as_deref()) {
            targets.push((client, region, obj.failover.as_ref().map_or(obj.name.clone(), |(n, _)| n.clone())));
        }
        let ask_both = cfg.failover_mode == FailoverMode::AskBoth;
        let mut found: Option<Fetched> = None;
        for (client, region, path) in targets {
            let _permit = self.permit().await?;
            let started = std::time::Instant::now();
            let mut pages = client
                .get_parameters_by_path()
                .path(path.trim_end_matches('/').to_owned() + "/")
                .recursive(true)
                .with_decryption(true)
                .into_paginator()
                .send();
            let mut entries = Vec::new();
            let mut failed = None;
            while let Some(page) = pages.next().await {
                match page {
                    Ok(page) => {
                        for p in page.parameters() {
                            let full = p.name().unwrap_or_default();
                            let relative = full.strip_prefix(path.as_str()).unwrap_or(full).trim_start_matches('/');
                            entries.push(crate::plan::Entry {
                                name: relative.to_owned(),
                                content: SecretBytes::new(p.value().unwrap_or_default().as_bytes().to_vec()),
                                version_id: Some(p.version().to_string()),
                            });
                        }
                    }
                    Err(e) => {
                        failed = Some(classify(e));
                        break;
                    }
                }
            }
            self.count("read", failed.is_none(), started);
            match failed {
                None => {
                    entries.sort_by(|a, b| a.name.cmp(&b.name));
                    let fetched = Fetched { content: SecretBytes::new(Vec::new()), version_id: None, entries: Some(entries) };
                    if !ask_both {
                        return Ok(fetched);
                    }
                    found.get_or_insert(fetched);
                }
                Some(failure) => {
                    let stop = !failure.failover;
                    attempts.push((region.to_owned(), path, failure));
                    if stop {
                        return Err(report("GetParametersByPath", spec, attempts));
                    }
                }
            }
        }
        found.ok_or_else(|| report("GetParametersByPath", spec, attempts))
    }
}

/// Batches of at most ten parameters in which no parameter name repeats (two
/// versions of one parameter go to different calls, so answers match requests).
pub(super) fn ssm_batches<'a>(objects: &[(usize, &'a ObjectSpec, &'a AwsObject)]) -> Vec<Vec<(usize, &'a ObjectSpec, &'a AwsObject)>> {
    let mut batches: Vec<Vec<(usize, &ObjectSpec, &AwsObject)>> = Vec::new();
    for &item in objects {
        let slot = batches
            .iter_mut()
            .find(|b| b.len() < SSM_BATCH && b.iter().all(|(_, _, o)| o.name != item.2.name));
        match slot {
            Some(batch) => batch.push(item),
            None => batches.push(vec![item]),
        }
    }
    batches
}

/// `name`, `name:version` or `name:label`.
fn ssm_name(name: &str, selector: &VersionSelector) -> String {
    match (&selector.version, &selector.label) {
        (Some(v), _) => format!("{name}:{v}"),
        (None, Some(l)) => format!("{name}:{l}"),
        (None, None) => name.to_owned(),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssm_names_carry_the_selector() {
        let v = VersionSelector { version: Some("3".into()), label: None };
        assert_eq!(ssm_name("/a/b", &v), "/a/b:3");
        let l = VersionSelector { version: None, label: Some("prod".into()) };
        assert_eq!(ssm_name("/a/b", &l), "/a/b:prod");
        assert_eq!(ssm_name("x", &VersionSelector::default()), "x");
    }
}
