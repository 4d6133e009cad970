//! One model-name rule for routing: every Ollama spelling of a loaded model is warm.

use vramroute_router::{same_model, FitKind, Policy, Request, ResidentModel};

use crate::common::{neutral, snap};

/// The fit kind for `requested` on a node where `loaded` is resident on GPU.
fn fit(loaded: &str, requested: &str) -> FitKind {
    let mut n = neutral("n", &[(24_576, 20_000)]);
    n.loaded_models
        .push(ResidentModel::new(loaded, 4_700, 4_700));
    let s = snap(vec![n]);
    let req = Request::new(requested, 4_700);
    let d = s.route(&Policy::default(), &req).expect("fits");
    let e = s.explain(&Policy::default(), &req);
    assert_eq!(e.decision, Some(d), "explain agrees for {requested}");
    d.fit
}

#[test]
fn every_spelling_of_a_loaded_model_is_already_loaded() {
    for (loaded, requested) in [
        ("llama3.1:8b", "llama3.1:8b"),
        ("llama3.1:8b", "Llama3.1:8B"),
        ("llama3.1:8b", "library/llama3.1:8b"),
        ("llama3.1:8b", "registry.ollama.ai/library/llama3.1:8b"),
        ("llama3.1:8b", " llama3.1:8b "),
        ("Llama3.1:8B", "llama3.1:8b"),
        ("library/llama3.1:8b", "LLAMA3.1:8b"),
        ("llama3.1", "llama3.1:latest"),
        ("llama3.1:latest", "llama3.1"),
        ("llama3.1:latest", "Llama3.1"),
        ("library/llama3.1", "llama3.1"),
    ] {
        assert!(same_model(loaded, requested), "{loaded} vs {requested}");
        assert_eq!(
            fit(loaded, requested),
            FitKind::AlreadyLoaded,
            "{requested} on a node with {loaded}"
        );
    }
}

#[test]
fn other_tags_and_invalid_names_are_cold() {
    for (loaded, requested) in [
        ("llama3.1:8b", "llama3.1"),
        ("llama3.1:8b", "llama3.1:70b"),
        ("llama3.1", "llama3.1:8b"),
        // Two tags is not an Ollama name; it is not guessed to be either.
        ("llama3.1:8b", "llama3.1:8b:latest"),
        ("user/llama3.1:8b", "llama3.1:8b"),
    ] {
        assert!(!same_model(loaded, requested), "{loaded} vs {requested}");
        assert_eq!(
            fit(loaded, requested),
            FitKind::SingleGpu,
            "{requested} on a node with {loaded}"
        );
    }
}
