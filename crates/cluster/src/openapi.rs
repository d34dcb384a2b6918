//! The OpenAPI 3 description, generated from the route table.

use crate::media;
use crate::routes::ROUTES;
use serde_json::{Map, Value, json};

pub fn document(base: &str) -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let p = format!("/{}", r.path);
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let media_type = r.ty.map(|t| {
            if r.list {
                media::collection(t)
            } else {
                media::item(t)
            }
        });
        let content = |schema: Value| -> Value {
            let mut c = Map::new();
            if let Some(m) = &media_type {
                c.insert(m.clone(), json!({"schema": schema.clone()}));
            }
            if !r.strict {
                c.insert("application/json".into(), json!({"schema": schema}));
            }
            Value::Object(c)
        };
        let body_schema = if r.list {
            json!({"type": "array", "items": {"type": "object"}})
        } else {
            json!({"type": "object"})
        };
        let mut responses = Map::new();
        let method = r.method.as_str().to_ascii_lowercase();
        match method.as_str() {
            "get" => {
                responses.insert(
                    "200".into(),
                    json!({"description": "OK", "content": content(body_schema)}),
                );
            }
            "post" if r.path == "login" => {
                responses.insert(
                    "200".into(),
                    json!({"description": "Logged in; Set-Cookie: sessionId=<token>"}),
                );
                responses.insert(
                    "401".into(),
                    json!({"$ref": "#/components/responses/Error"}),
                );
            }
            "post" => {
                responses.insert(
                    "201".into(),
                    json!({"description": "Created", "headers": {"Location": {"schema": {"type": "string"}}}}),
                );
            }
            _ => {
                responses.insert("204".into(), json!({"description": "Done"}));
            }
        }
        for code in ["400", "401", "404", "406", "409"] {
            responses
                .entry(code)
                .or_insert(json!({"$ref": "#/components/responses/Error"}));
        }
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{method}_{}", r.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": responses,
        });
        if method == "post" || method == "put" {
            op["requestBody"] = json!({"content": content(json!({"type": "object"}))});
        }
        let entry = paths.entry(p).or_insert_with(|| json!({}));
        entry[method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "MidoNet REST API v5 (midonet-rs)",
            "version": "5.0",
            "description": "Wire-compatible with midonetclient 5.2.0. Every object carries `uri` and link fields; \
                            every field is present (null when unset); integers may be sent as strings."
        },
        "servers": [{"url": base}],
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {
                "message": {"type": "string"}, "code": {"type": "integer"},
                "violations": {"type": "array", "items": {"type": "object", "properties": {
                    "property": {"type": "string"}, "message": {"type": "string"}}}}}}},
            "responses": {"Error": {"description": "An error", "content": {
                crate::error::ERROR_MEDIA: {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}}
        },
        "security": [{"token": []}],
        "paths": paths,
    })
}
