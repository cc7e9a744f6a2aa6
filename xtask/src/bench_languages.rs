//! The kv plugin per language in `cargo xtask bench`'s report: criterion's
//! estimates from `host/benches/plugin_languages.rs`.

use serde_json::Value;

/// The kv plugin per language: put and get latency (and the ratio to
/// Rust's), and cold load time.
pub fn rows(plugin: &Value) -> Vec<String> {
    let ns = |key: String| plugin[key].as_f64().unwrap_or(0.0);
    let ratio = |value: f64, rust: f64| if rust > 0.0 { value / rust } else { 0.0 };
    let mut lines = vec![
        String::new(),
        "| kv plugin | put 256 B | get | compile (cold load) |".to_string(),
        "|---|---:|---:|---:|".to_string(),
    ];
    let rust_put = ns("kv_put_256B_rust".to_string());
    let rust_get = ns("kv_get_rust".to_string());
    for language in ["rust", "python", "javascript"] {
        let put = ns(format!("kv_put_256B_{language}"));
        let get = ns(format!("kv_get_{language}"));
        lines.push(format!(
            "| {language} | {:.1} µs ({:.1}x) | {:.1} µs ({:.1}x) | {:.0} ms |",
            put / 1e3,
            ratio(put, rust_put),
            get / 1e3,
            ratio(get, rust_get),
            ns(format!("kv_compile_{language}")) / 1e6,
        ));
    }
    lines.push(String::new());
    lines
}
