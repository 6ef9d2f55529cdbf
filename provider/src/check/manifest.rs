//! Reading SecretProviderClass manifests from files and directories, within
//! fixed bounds: `check` runs in CI on files from pull requests, so a huge, deep
//! or endless input fails fast with a message instead of exhausting the runner.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest manifest file read.
pub(crate) const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most files read from the directories given.
pub(crate) const MAX_FILES: usize = 10_000;
/// Most YAML documents in one file.
pub(crate) const MAX_DOCUMENTS: usize = 1_000;
/// Deepest nesting of one document; manifests need about ten levels.
const MAX_DEPTH: usize = 64;
/// Most parser events of one file (every value is one or two).
const MAX_EVENTS: usize = 2_000_000;
/// Most aliases one file may use.
const MAX_ALIASES: usize = 1_024;
/// Most events aliases may replay in one file: manifests use few, and an alias bomb is
/// stopped here long before it costs time or memory.
const MAX_REPLAYED_EVENTS: usize = 100_000;

/// A file or directory could not be read as manifests: the command's input is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputError {
    /// The file or directory cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Over [`MAX_FILE_BYTES`].
    #[error("{path}: over {MAX_FILE_BYTES} bytes; split the manifests into smaller files")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Over [`MAX_FILES`].
    #[error("{path}: holds over {MAX_FILES} manifest files")]
    TooManyFiles {
        /// The directory.
        path: PathBuf,
    },
    /// Over [`MAX_DOCUMENTS`].
    #[error("{path}: holds over {MAX_DOCUMENTS} YAML documents")]
    TooManyDocuments {
        /// The file.
        path: PathBuf,
    },
    /// Not YAML, or over the depth, size or alias bounds.
    #[error("{path}: not valid YAML within the checker's bounds ({problem})")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's first line (position and kind, no input text).
        problem: String,
    },
}

/// One YAML document of a manifest file, as far as `check` needs it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Document {
    /// `apiVersion`.
    #[serde(default)]
    pub(super) api_version: Option<String>,
    /// `kind`.
    #[serde(default)]
    pub(super) kind: Option<String>,
    /// `metadata`.
    #[serde(default)]
    pub(super) metadata: Metadata,
    /// `spec`, any shape (other kinds share the files).
    #[serde(default)]
    pub(super) spec: Option<serde_json::Value>,
}

/// `metadata.name` and `metadata.namespace`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Metadata {
    /// The object's name.
    #[serde(default)]
    pub(super) name: Option<String>,
    /// The object's namespace.
    #[serde(default)]
    pub(super) namespace: Option<String>,
}

/// A document and where it came from.
#[derive(Debug)]
pub(super) struct Located {
    /// The file.
    pub(super) file: PathBuf,
    /// 1-based position among the file's non-empty documents.
    pub(super) document: usize,
    /// The document.
    pub(super) body: Document,
}

/// Every document of `paths`: files as given, directories' `*.yaml`, `*.yml` and
/// `*.json` files (not recursive), in name order.
pub(super) fn read_all(paths: &[PathBuf]) -> Result<Vec<Located>, InputError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| InputError::Io { path: path.clone(), source })?;
        if meta.is_dir() {
            files.extend(manifest_files(path)?);
        } else {
            files.push(path.clone());
        }
        if files.len() > MAX_FILES {
            return Err(InputError::TooManyFiles { path: path.clone() });
        }
    }
    let mut out = Vec::new();
    for file in files {
        let text = read_bounded(&file)?;
        let documents = parse_documents(&file, &text)?;
        out.extend(documents.into_iter().enumerate().map(|(i, body)| Located { file: file.clone(), document: i + 1, body }));
    }
    Ok(out)
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let io = |source| InputError::Io { path: dir.to_owned(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let manifest = path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if manifest && path.is_file() {
            files.push(path);
            if files.len() > MAX_FILES {
                return Err(InputError::TooManyFiles { path: dir.to_owned() });
            }
        }
    }
    files.sort();
    Ok(files)
}

fn read_bounded(path: &Path) -> Result<String, InputError> {
    let io = |source| InputError::Io { path: path.to_owned(), source };
    let mut text = String::new();
    std::fs::File::open(path).map_err(io)?.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(InputError::TooLarge { path: path.to_owned() });
    }
    Ok(text)
}

/// The documents of one file, within the bounds.
pub(super) fn parse_documents(path: &Path, text: &str) -> Result<Vec<Document>, InputError> {
    // Counted before parsing: a file of a million empty documents costs no values but
    // is no manifest either.
    let separators = text.lines().filter(|l| l.starts_with("---")).count();
    if separators > MAX_DOCUMENTS {
        return Err(InputError::TooManyDocuments { path: path.to_owned() });
    }
    let mut options = serde_saphyr::Options::default();
    // `filePermission: 0600` stays "0600", as the provider reads it.
    options.leading_zero_numbers_as_strings = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = MAX_EVENTS;
    budget.max_nodes = MAX_EVENTS / 2;
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = MAX_ALIASES;
    budget.max_documents = MAX_DOCUMENTS;
    // Alias replays included: a few times the file's own size.
    budget.max_total_scalar_bytes = 4 * MAX_FILE_BYTES as usize;
    options.budget = Some(budget);
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    alias_limits.max_replay_stack_depth = MAX_DEPTH;
    options.alias_limits = alias_limits;
    let documents: Vec<Document> = serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("syntax error");
        InputError::Yaml { path: path.to_owned(), problem: first.chars().take(200).collect() }
    })?;
    if documents.len() > MAX_DOCUMENTS {
        return Err(InputError::TooManyDocuments { path: path.to_owned() });
    }
    Ok(documents)
}

/// `spec.provider` and `spec.parameters` of a SecretProviderClass; each parameter must be
/// a string, as the API server's schema demands.
pub(super) fn provider_and_parameters(spec: Option<&serde_json::Value>) -> Result<(String, BTreeMap<String, String>), String> {
    let Some(spec) = spec.and_then(serde_json::Value::as_object) else {
        return Err("spec: missing; a SecretProviderClass needs spec.provider and spec.parameters".to_owned());
    };
    let provider = match spec.get("provider") {
        Some(serde_json::Value::String(p)) if !p.trim().is_empty() => p.trim().to_owned(),
        Some(serde_json::Value::String(_)) | None => return Err("spec.provider: missing".to_owned()),
        Some(other) => return Err(format!("spec.provider: must be a string, found {}", crate::plan::kind_of(other))),
    };
    let mut parameters = BTreeMap::new();
    match spec.get("parameters") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(s) => {
                        parameters.insert(key.clone(), s.clone());
                    }
                    other => {
                        return Err(format!(
                            "spec.parameters.{key}: must be a string, found {} (quote it)",
                            crate::plan::kind_of(other)
                        ));
                    }
                }
            }
        }
        Some(other) => {
            return Err(format!("spec.parameters: must be a map of strings, found {}", crate::plan::kind_of(other)));
        }
    }
    Ok((provider, parameters))
}
