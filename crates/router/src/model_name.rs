//! The one rule for "are these two model names the same model": Ollama's spelling rules.
//!
//! Ollama accepts a model under several spellings: any ASCII case, with or without the
//! `registry.ollama.ai/library/` or `library/` prefix of its default namespace, and with
//! or without the default tag `:latest`. The canonical form is trimmed, lower-case,
//! without those prefixes, and always tagged (`llama3.1` → `llama3.1:latest`). Every
//! comparison of model names in vramroute (the router's warm-start check, alloc's size
//! table, the coordinator) goes through this module, so they cannot disagree.
//!
//! A name with two tags (`llama3.1:8b:latest`) is not a valid Ollama name; it is kept as
//! written (lower-cased) rather than guessed at, so it matches no valid name.

use std::borrow::Cow;

/// Prefixes of Ollama's default namespace, longest first.
const DEFAULT_NAMESPACE: [&str; 2] = ["registry.ollama.ai/library/", "library/"];

/// The tag Ollama assumes when a name has none.
const DEFAULT_TAG: &str = ":latest";

/// The canonical spelling of an Ollama model name: trimmed, ASCII lower-case, without a
/// `registry.ollama.ai/library/` or `library/` prefix, and with `:latest` when the name
/// has no tag. Borrows (allocates nothing) when `name` is already canonical.
///
/// ```
/// use std::borrow::Cow;
/// use vramroute_router::normalize_model_name;
/// assert_eq!(normalize_model_name("llama3.1"), "llama3.1:latest");
/// assert_eq!(normalize_model_name(" Llama3.1:8B "), "llama3.1:8b");
/// assert_eq!(normalize_model_name("registry.ollama.ai/library/mistral:7b"), "mistral:7b");
/// assert_eq!(normalize_model_name("library/mistral"), "mistral:latest");
/// assert_eq!(normalize_model_name("user/model"), "user/model:latest");
/// // A port in the registry host is not a tag.
/// assert_eq!(normalize_model_name("host:5000/user/model"), "host:5000/user/model:latest");
/// // Already canonical: borrowed, no allocation.
/// assert!(matches!(normalize_model_name("llama3.1:8b"), Cow::Borrowed(_)));
/// ```
pub fn normalize_model_name(name: &str) -> Cow<'_, str> {
    if is_clean(name) && has_tag(name) {
        return Cow::Borrowed(name);
    }
    let mut n = name.trim().to_ascii_lowercase();
    while let Some(rest) = DEFAULT_NAMESPACE.iter().find_map(|p| n.strip_prefix(p)) {
        n = rest.to_owned();
    }
    if !has_tag(&n) {
        n.push_str(DEFAULT_TAG);
    }
    Cow::Owned(n)
}

/// Whether two names denote the same Ollama model ([`normalize_model_name`] of both are
/// equal).
///
/// ```
/// use vramroute_router::same_model;
/// assert!(same_model("Llama3.1:8B", "llama3.1:8b"));
/// assert!(same_model("library/llama3.1:8b", "llama3.1:8b"));
/// assert!(same_model("llama3.1", "llama3.1:latest"));
/// assert!(!same_model("llama3.1", "llama3.1:8b"));
/// // Two tags is not an Ollama name: it is not guessed to be either.
/// assert!(!same_model("llama3.1:8b:latest", "llama3.1:8b"));
/// ```
pub fn same_model(a: &str, b: &str) -> bool {
    normalize_model_name(a) == normalize_model_name(b)
}

/// Whether `name` needs no rewriting except, perhaps, the default tag: no surrounding
/// whitespace, no ASCII upper case, no default-namespace prefix.
pub(crate) fn is_clean(name: &str) -> bool {
    !name.starts_with(char::is_whitespace)
        && !name.ends_with(char::is_whitespace)
        && !name.bytes().any(|b| b.is_ascii_uppercase())
        && !DEFAULT_NAMESPACE.iter().any(|p| name.starts_with(p))
}

/// Whether the last `/`-separated segment carries a `:tag`.
fn has_tag(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

/// The untagged spelling of a canonical `name:latest` (`llama3.1:latest` → `llama3.1`),
/// which the snapshot interns as an alias so that clean untagged requests are found
/// without allocating.
pub(crate) fn untagged_alias(canonical: &str) -> Option<&str> {
    canonical.strip_suffix(DEFAULT_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_is_a_fixed_point_and_borrowed() {
        for name in [
            "llama3.1",
            " Llama3.1:8B ",
            "library/Mistral",
            "registry.ollama.ai/library/mistral:7b",
            "user/model",
            "host:5000/user/model",
            "llama3.1:8b:latest",
            "library/library/x",
            "",
        ] {
            let once = normalize_model_name(name).into_owned();
            assert!(
                matches!(normalize_model_name(&once), Cow::Borrowed(_)),
                "{name} → {once} is not a fixed point"
            );
        }
    }

    #[test]
    fn clean_untagged_names_alias_their_latest_form() {
        assert!(is_clean("llama3.1"));
        assert_eq!(untagged_alias("llama3.1:latest"), Some("llama3.1"));
        assert_eq!(untagged_alias("llama3.1:8b"), None);
        assert!(!is_clean("Llama3.1"));
        assert!(!is_clean("library/llama3.1"));
        assert!(!is_clean("llama3.1 "));
    }
}
