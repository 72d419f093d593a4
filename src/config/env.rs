//! `${ENV_VAR}` expansion for connection strings, so secrets live in the environment and never
//! in a config file.

/// Replaces every `${NAME}` in `input` by the variable's value; `$$` is a literal `$`.
/// Returns the name of the first variable that is not set.
pub fn expand_env(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_owned())?;
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PW").then(|| "s3cr$t".to_owned())
    }

    #[test]
    fn expands_and_escapes() {
        assert_eq!(expand_env("Pwd=${PW};", env).unwrap(), "Pwd=s3cr$t;");
        assert_eq!(expand_env("a$$b $x", env).unwrap(), "a$b $x");
    }

    #[test]
    fn names_the_missing_variable() {
        assert_eq!(
            expand_env("Pwd=${NOPE}", env).unwrap_err(),
            "environment variable `NOPE` is not set"
        );
        assert!(expand_env("Pwd=${PW", env).is_err());
    }
}
