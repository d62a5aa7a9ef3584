//! Every operation of `/openapi.json`, driven with generated input: path parameters, query
//! values and JSON bodies from a corpus of awkward values and the body schema's own field
//! names, as anonymous, operator, publisher and tenant. Whatever comes in, no answer is a
//! 5xx, and every error is the one JSON shape with a stable code.

use axum::body::Body;
use axum::http::{Request, header};
use serde_json::{Value, json};

use super::common::{Env, runtime};

/// Values that have broken servers: empty, long, numeric edge cases, encodings, traversal.
const AWKWARD: &[&str] = &[
    "",
    "a",
    "0",
    "-1",
    "18446744073709551616",
    "1e309",
    "true",
    "null",
    "nexus-labs",
    "nexus-labs/echo",
    "../../etc/passwd",
    "%00",
    "ñ",
    "💥",
    "a b",
    "'; DROP TABLE installs; --",
    "_",
    "%",
    "*",
    "^1",
    ">=0.0.0",
];

/// A small deterministic generator (xorshift), so a failure replays.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    fn text(&mut self) -> String {
        match self.next() % 4 {
            0 => "x".repeat((self.next() % 5000) as usize),
            _ => self.pick(AWKWARD).to_string(),
        }
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.next() % if depth > 2 { 5 } else { 7 } {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(2)),
            2 => json!(self.next() as i64),
            3 => json!(-((self.next() % 1000) as i64)),
            4 => json!(self.text()),
            5 => Value::Array((0..self.next() % 3).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let keys = ["id", "type", "payload", "plugin", "consent", "capabilities", "hosts", "config"];
                let mut object = serde_json::Map::new();
                for _ in 0..self.next() % 4 {
                    object.insert(self.pick(&keys).to_string(), self.value(depth + 1));
                }
                Value::Object(object)
            }
        }
    }
}

/// The property names of an operation's JSON request body, following one `$ref`.
fn body_fields(doc: &Value, operation: &Value) -> Vec<String> {
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    let schema = match schema["$ref"].as_str() {
        Some(target) => &doc["components"]["schemas"][target.trim_start_matches("#/components/schemas/")],
        None => schema,
    };
    schema["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn no_generated_request_gets_a_5xx_or_an_error_outside_the_shape() {
    runtime().block_on(async {
        let env = Env::new(false).await;
        let tenant = env.tenant("globex").await;
        let (_, _, doc) = env.raw(Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
        let doc: Value = serde_json::from_slice(&doc).unwrap();
        let tokens = [None, Some(env.operator.clone()), Some(env.publisher.clone()), Some(tenant)];
        let mut generator = Gen(0x9e37_79b9_7f4a_7c15);
        let mut sent = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let fields = body_fields(&doc, operation);
                let params = operation["parameters"].as_array().cloned().unwrap_or_default();
                for case in 0..24 {
                    let mut uri = path.clone();
                    let mut query = Vec::new();
                    for param in &params {
                        let name = param["name"].as_str().unwrap();
                        let value = generator.text();
                        match param["in"].as_str() {
                            Some("path") => uri = uri.replace(&format!("{{{name}}}"), &encode(&value)),
                            _ if generator.next().is_multiple_of(2) => query.push(format!("{name}={}", encode(&value))),
                            _ => {}
                        }
                    }
                    if !query.is_empty() {
                        uri = format!("{uri}?{}", query.join("&"));
                    }
                    let body = if fields.is_empty() || case % 5 == 0 {
                        generator.value(0)
                    } else {
                        let mut object = serde_json::Map::new();
                        for field in &fields {
                            if !generator.next().is_multiple_of(4) {
                                object.insert(field.clone(), generator.value(1));
                            }
                        }
                        Value::Object(object)
                    };
                    let mut request = Request::builder().method(method.to_uppercase().as_str()).uri(&uri);
                    if let Some(token) = generator.pick(&tokens) {
                        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
                    }
                    let request = match method.as_str() {
                        "post" | "patch" | "put" => request
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Body::from(body.to_string()))
                            .unwrap(),
                        _ => request.body(Body::empty()).unwrap(),
                    };
                    let (status, headers, bytes) = env.raw(request).await;
                    sent += 1;
                    let what = format!("{} {}", method.to_uppercase(), &uri[..uri.len().min(120)]);
                    assert!(!status.is_server_error(), "{what}: {status} {}", String::from_utf8_lossy(&bytes));
                    if status.is_client_error() {
                        let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        assert!(error["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{what}: {error}");
                        assert!(headers.contains_key("x-request-id"), "{what}");
                    }
                }
            }
        }
        assert!(sent > 800, "{sent} requests");
    })
}
