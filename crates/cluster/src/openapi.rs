//! The OpenAPI 3 description, generated from the route table.

use crate::media;
use crate::routes::ROUTES;
use serde_json::{Map, Value, json};

/// The fields of a request body of the vendor type `ty` (`Bridge-v4`), from
/// the model object's own serialization: every field the API reads, with
/// its JSON type (what a fuzzer generates bodies from).
fn request_fields(ty: &str) -> Option<Value> {
    use model::*;
    fn of<T: Default + serde::Serialize>() -> Option<Value> {
        serde_json::to_value(T::default()).ok()
    }
    let base = ty.rsplit_once("-v").map_or(ty, |(b, _)| b);
    let example = match base {
        "Router" => of::<Router>(),
        "Bridge" => of::<Bridge>(),
        "Port" => of::<Port>(),
        "Route" => of::<Route>(),
        "BgpNetwork" => of::<BgpNetwork>(),
        "BgpPeer" => of::<BgpPeer>(),
        "DhcpSubnet" => of::<DhcpSubnet>(),
        "DhcpHost" => of::<DhcpHost>(),
        "Chain" => of::<Chain>(),
        "Rule" => serde_json::from_value::<Rule>(json!({"type": "accept"}))
            .ok()
            .and_then(|r| serde_json::to_value(r).ok()),
        "PortGroup" => of::<PortGroup>(),
        "IpAddrGroup" => of::<IpAddrGroup>(),
        "IpAddrGroupAddr" => Some(json!({"addr": "", "version": 4})),
        "TunnelZone" => of::<TunnelZone>(),
        "TunnelZoneHost" => of::<TunnelZoneHost>(),
        "Host" => of::<Host>(),
        "LoadBalancer" => of::<LoadBalancer>(),
        "HealthMonitor" => of::<HealthMonitor>(),
        "Pool" => of::<Pool>(),
        "PoolMember" => of::<PoolMember>(),
        "VIP" => of::<Vip>(),
        "Mirror" => of::<Mirror>(),
        "L2Insertion" => of::<L2Insertion>(),
        "TraceRequest" => of::<TraceRequest>(),
        "ServiceContainerGroup" => of::<ServiceContainerGroup>(),
        "ServiceContainer" => of::<ServiceContainer>(),
        "VTEP" => of::<Vtep>(),
        "PortLink" => Some(json!({"portId": "", "peerId": ""})),
        "PortGroupPort" => Some(json!({"portGroupId": "", "portId": ""})),
        "HostInterfacePort" => Some(json!({"hostId": "", "portId": "", "interfaceName": ""})),
        _ => None,
    }?;
    Some(schema_of(&example))
}

/// A JSON schema of `v`'s shape: each value's type (null: any).
fn schema_of(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let props: Map<String, Value> =
                m.iter().map(|(k, x)| (k.clone(), schema_of(x))).collect();
            json!({"type": "object", "properties": props})
        }
        Value::Array(a) => match a.first() {
            Some(x) => json!({"type": "array", "items": schema_of(x)}),
            None => json!({"type": "array"}),
        },
        Value::String(_) => json!({"type": "string"}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_f64() => json!({"type": "number"}),
        Value::Number(_) => json!({"type": "integer"}),
        Value::Null => json!({}),
    }
}

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
            let schema =
                r.ty.and_then(request_fields)
                    .unwrap_or_else(|| json!({"type": "object"}));
            op["requestBody"] = json!({"content": content(schema)});
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
