//! What the run says on stderr besides progress, in the format `--log-format` asks: text for
//! a person, or one JSON object a line for an orchestrator (docs/guide.md, "JSON logs").

use std::io::Write;
use std::sync::OnceLock;

use crate::args::LogFormat;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Sets the format, once, before anything is said.
pub fn set(format: LogFormat) {
    let _ = FORMAT.set(format);
}

/// Whether stderr is a log of JSON objects.
pub fn json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// One line on stderr, written whole (a closed stderr does not fail the run).
pub fn line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// A JSON object of `event` with `fields`, as one line.
pub fn event(event: &str, fields: serde_json::Value) {
    let mut object = serde_json::Map::new();
    object.insert("event".into(), event.into());
    if let serde_json::Value::Object(fields) = fields {
        object.extend(fields);
    }
    line(&serde_json::Value::Object(object).to_string());
}

/// A warning: `warning: …`, or a `warning` event.
pub fn warn(message: &str) {
    match json() {
        true => event("warning", serde_json::json!({ "message": message })),
        false => line(&format!("warning: {message}")),
    }
}
