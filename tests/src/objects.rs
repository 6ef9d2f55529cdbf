//! The `objects` parameter of a SecretProviderClass, built entry by entry as an author writes it (a YAML block
//! list), for every suite.

use serde_json::Value;

/// One entry of `objects`: fields in the order they are written.
#[derive(Debug, Clone, Default)]
pub struct Obj {
    fields: Vec<(&'static str, String)>,
}

/// A Vault object named `name` read from `path`.
pub fn obj(name: &str, path: &str) -> Obj {
    Obj::new(name, path)
}

/// A Secrets Manager secret (`objectType: secretsmanager`).
pub fn sm(name: &str) -> Obj {
    Obj::bare().text("objectName", name).text("objectType", "secretsmanager")
}

/// An SSM parameter or path (`objectType: ssmparameter`).
pub fn ssm(name: &str) -> Obj {
    Obj::bare().text("objectName", name).text("objectType", "ssmparameter")
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
pub fn quote(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

impl Obj {
    /// A Vault object named `name` read from `path`.
    pub fn new(name: &str, path: &str) -> Self {
        Self::bare().text("objectName", name).text("secretPath", path)
    }

    /// The `objectName` given, as text (empty if none).
    pub fn name(&self) -> String {
        self.fields
            .iter()
            .find(|(n, _)| *n == "objectName")
            .and_then(|(_, v)| serde_json::from_str::<String>(v).ok())
            .unwrap_or_default()
    }

    /// An entry with only the fields given later (for invalid entries and AWS objects).
    pub fn bare() -> Self {
        Self::default()
    }

    /// `secretKey`.
    pub fn key(self, key: &str) -> Self {
        self.text("secretKey", key)
    }

    /// `method`.
    pub fn method(self, method: &str) -> Self {
        self.text("method", method)
    }

    /// `secretArgs`, written as a YAML flow mapping (JSON).
    pub fn args(self, args: Value) -> Self {
        self.field("secretArgs", args.to_string())
    }

    /// `method: PUT` with `secretArgs`.
    pub fn put(self, args: Value) -> Self {
        self.method("PUT").args(args)
    }

    /// `objectAlias`.
    pub fn alias(self, alias: &str) -> Self {
        self.text("objectAlias", alias)
    }

    /// `expandKeys: true`.
    pub fn expand(self) -> Self {
        self.field("expandKeys", "true".to_owned())
    }

    /// `render: false`.
    pub fn hidden(self) -> Self {
        self.field("render", "false".to_owned())
    }

    /// `encoding`.
    pub fn encoding(self, encoding: &str) -> Self {
        self.text("encoding", encoding)
    }

    /// `objectEncoding`.
    pub fn object_encoding(self, encoding: &str) -> Self {
        self.text("objectEncoding", encoding)
    }

    /// `filePermission`, written unquoted as a manifest author writes it (`0600` is octal).
    pub fn file_permission(self, raw: &str) -> Self {
        self.field("filePermission", raw.to_owned())
    }

    /// Same as [`file_permission`](Self::file_permission).
    pub fn mode(self, raw: &str) -> Self {
        self.file_permission(raw)
    }

    /// `jmesPath`: (expression, objectAlias) pairs.
    pub fn jmes(self, entries: &[(&str, &str)]) -> Self {
        let list: Vec<Value> =
            entries.iter().map(|(path, alias)| serde_json::json!({"path": path, "objectAlias": alias})).collect();
        self.field("jmesPath", Value::Array(list).to_string())
    }

    /// A field whose value is the string `text`.
    pub fn text(self, name: &'static str, text: &str) -> Self {
        self.field(name, quote(text))
    }

    /// Any field with a YAML value written verbatim; replaces an earlier one of the same name.
    pub fn field(mut self, name: &'static str, yaml: String) -> Self {
        self.fields.retain(|(n, _)| *n != name);
        self.fields.push((name, yaml));
        self
    }
}

/// The `objects` parameter: a YAML block list, as SecretProviderClasses carry it.
pub fn objects_yaml(objects: &[Obj]) -> String {
    let mut yaml = String::new();
    for object in objects {
        for (i, (name, value)) in object.fields.iter().enumerate() {
            let lead = if i == 0 { "- " } else { "  " };
            yaml.push_str(&format!("{lead}{name}: {value}\n"));
        }
        if object.fields.is_empty() {
            yaml.push_str("- {}\n");
        }
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_written_as_a_block_list() {
        let yaml = objects_yaml(&[obj("a", "secret/data/a").key("k").mode("0600"), Obj::bare()]);
        assert_eq!(
            yaml,
            "- objectName: \"a\"\n  secretPath: \"secret/data/a\"\n  secretKey: \"k\"\n  filePermission: 0600\n- {}\n"
        );
    }
}
