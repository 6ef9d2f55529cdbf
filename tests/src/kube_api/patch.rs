//! The patch formats the fake applies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// Applies a JSON merge patch to `target`: objects merge key by key, `null` removes a key, anything else
/// (lists included) replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Applies a strategic merge patch as the API server does for the fields Courier's components touch: maps
/// merge as in a merge patch, `metadata.ownerReferences` merges by `uid`, `metadata.finalizers` merges as a
/// set, and every other list is replaced. Patch directives (`$patch`, `$retainKeys`,
/// `$deleteFromPrimitiveList/...`, `$setElementOrder/...`) are refused, so a client relying on them fails
/// loudly rather than being served something else.
pub(crate) fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    if let Some(directive) = find_directive(patch) {
        return Err(format!(
            "this fake does not apply strategic merge patch directives such as {directive:?}"
        ));
    }
    let mut merged_lists = Vec::new();
    if let Some(owners) = patch
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    {
        let mut list = target
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for owner in owners {
            let uid = owner.get("uid").and_then(Value::as_str).unwrap_or_default();
            match list
                .iter_mut()
                .find(|o| o.get("uid").and_then(Value::as_str) == Some(uid))
            {
                Some(existing) => merge_patch(existing, owner),
                None => list.push(owner.clone()),
            }
        }
        merged_lists.push(("ownerReferences", Value::Array(list)));
    }
    if let Some(finalizers) = patch
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
    {
        let mut list = target
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for finalizer in finalizers {
            if !list.contains(finalizer) {
                list.push(finalizer.clone());
            }
        }
        merged_lists.push(("finalizers", Value::Array(list)));
    }
    merge_patch(target, patch);
    for (field, list) in merged_lists {
        target["metadata"][field] = list;
    }
    Ok(())
}

fn find_directive(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.starts_with('$') {
                Some(k.clone())
            } else {
                find_directive(v)
            }
        }),
        Value::Array(list) => list.iter().find_map(find_directive),
        _ => None,
    }
}

/// Applies a JSON patch (a list of `add`, `remove`, `replace`, `move`, `copy` and `test` operations). A
/// failed `test` or a missing path fails the whole patch and leaves `target` untouched.
pub(crate) fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let operations = patch
        .as_array()
        .ok_or("a JSON patch must be a list of operations")?;
    let mut result = target.clone();
    for (i, operation) in operations.iter().enumerate() {
        apply_operation(&mut result, operation).map_err(|e| format!("operation {i}: {e}"))?;
    }
    *target = result;
    Ok(())
}

fn apply_operation(doc: &mut Value, operation: &Value) -> Result<(), String> {
    let op = operation
        .get("op")
        .and_then(Value::as_str)
        .ok_or("missing \"op\"")?;
    let path = operation
        .get("path")
        .and_then(Value::as_str)
        .ok_or("missing \"path\"")?;
    let value = || {
        operation
            .get("value")
            .cloned()
            .ok_or_else(|| format!("{op} needs a \"value\""))
    };
    let from = || {
        operation
            .get("from")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{op} needs a \"from\""))
    };
    match op {
        "add" => add(doc, path, value()?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            let slot = doc
                .pointer_mut(path)
                .ok_or_else(|| format!("replace: {path} does not exist"))?;
            *slot = value()?;
            Ok(())
        }
        "test" => {
            let have = doc
                .pointer(path)
                .ok_or_else(|| format!("test: {path} does not exist"))?;
            if *have == value()? {
                Ok(())
            } else {
                Err(format!("test: {path} has another value"))
            }
        }
        "move" => {
            let moved = remove(doc, from()?)?;
            add(doc, path, moved)
        }
        "copy" => {
            let copied = doc
                .pointer(from()?)
                .cloned()
                .ok_or_else(|| format!("copy: {path} does not exist"))?;
            add(doc, path, copied)
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

fn split(path: &str) -> Result<(&str, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("{path:?} is not a JSON pointer"))?;
    Ok((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(list)) => {
            let index = if last == "-" {
                list.len()
            } else {
                last.parse().map_err(|_| format!("{path}: bad index"))?
            };
            if index > list.len() {
                return Err(format!("{path}: index out of range"));
            }
            list.insert(index, value);
            Ok(())
        }
        _ => Err(format!("add: the parent of {path} does not exist")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => map
            .remove(&last)
            .ok_or_else(|| format!("remove: {path} does not exist")),
        Some(Value::Array(list)) => {
            let index: usize = last.parse().map_err(|_| format!("{path}: bad index"))?;
            if index < list.len() {
                Ok(list.remove(index))
            } else {
                Err(format!("remove: {path} does not exist"))
            }
        }
        _ => Err(format!("remove: {path} does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn strategic_merge_patch_merges_owners_by_uid() {
        let mut doc = json!({"metadata": {"ownerReferences": [{"uid": "a", "name": "rs-a"}], "finalizers": ["x"]}, "data": {"k": "v"}});
        strategic_merge_patch(
            &mut doc,
            &json!({"metadata": {"ownerReferences": [{"uid": "b", "name": "rs-b"}, {"uid": "a", "name": "renamed"}], "finalizers": ["x", "y"]}}),
        )
        .expect("applies");
        assert_eq!(
            doc["metadata"]["ownerReferences"],
            json!([{"uid": "a", "name": "renamed"}, {"uid": "b", "name": "rs-b"}])
        );
        assert_eq!(doc["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(doc["data"], json!({"k": "v"}));
        assert!(
            strategic_merge_patch(&mut doc, &json!({"metadata": {"$patch": "replace"}})).is_err()
        );
    }

    #[test]
    fn json_patch_applies_all_or_nothing() {
        let mut doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        json_patch(
            &mut doc,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a", "value": "3"},
                {"op": "add", "path": "/list/-", "value": 9},
                {"op": "remove", "path": "/list/0"},
                {"op": "test", "path": "/list", "value": [2, 9]},
            ]),
        )
        .expect("applies");
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"a": "3", "b/c": "2"}}, "list": [2, 9]})
        );
        let before = doc.clone();
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/list/0"}, {"op": "test", "path": "/list", "value": []}])).is_err());
        assert_eq!(doc, before);
    }
}
