//! The routes, methods, success statuses and query parameters the client uses for policies,
//! identities, audit, rotation, events and webhooks, checked against the server's own `/v1/openapi.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};

use scaivault_testkit::Server;
use serde_json::Value;

/// `GET /v1/openapi.json` over a plain socket (the dev server speaks HTTP/1.1 without TLS).
fn openapi(server: &Server) -> Value {
    let host = server.address.strip_prefix("http://").unwrap();
    let mut socket = std::net::TcpStream::connect(host).unwrap();
    write!(
        socket,
        "GET /v1/openapi.json HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

#[test]
fn the_client_uses_the_documented_routes() {
    let server = Server::start(&[]);
    let doc = openapi(&server);
    // (method, route, success status, query parameters the client sends)
    let used: &[(&str, &str, &str, &[&str])] = &[
        ("post", "/v1/policies", "201", &[]),
        ("post", "/v1/auth/kubernetes/login", "200", &[]),
        ("get", "/v1/policies", "200", &["path"]),
        ("get", "/v1/policies/{id}", "200", &[]),
        ("put", "/v1/policies/{id}", "200", &[]),
        ("delete", "/v1/policies/{id}", "204", &[]),
        ("post", "/v1/policies/{id}/bindings", "201", &[]),
        ("get", "/v1/policies/{id}/bindings", "200", &[]),
        (
            "delete",
            "/v1/policies/{id}/bindings/{identity_id}",
            "204",
            &[],
        ),
        ("post", "/v1/policies/test", "200", &[]),
        ("post", "/v1/identities", "201", &[]),
        ("get", "/v1/identities", "200", &[]),
        ("get", "/v1/identities/{identity}", "200", &[]),
        (
            "get",
            "/v1/audit/logs",
            "200",
            &[
                "from", "to", "identity", "path", "action", "outcome", "cursor", "limit",
            ],
        ),
        ("get", "/v1/audit/secrets/{path}", "200", &["from", "to"]),
        (
            "get",
            "/v1/audit/identities/{identity}",
            "200",
            &["from", "to"],
        ),
        ("get", "/v1/audit/verify", "200", &["from", "to"]),
        ("post", "/v1/audit/hmac", "200", &[]),
        ("post", "/v1/audit/export", "202", &[]),
        ("get", "/v1/audit/exports/{id}", "200", &[]),
        ("post", "/v1/secrets/{path}/rotate", "200", &[]),
        (
            "get",
            "/v1/rotation/due",
            "200",
            &[
                "within_hours",
                "include_overdue",
                "prefix",
                "limit",
                "cursor",
            ],
        ),
        (
            "get",
            "/v1/events",
            "200",
            &["types", "path_prefix", "after", "limit"],
        ),
        ("post", "/v1/webhooks", "201", &[]),
        ("get", "/v1/webhooks", "200", &[]),
        ("get", "/v1/webhooks/{id}", "200", &[]),
        ("patch", "/v1/webhooks/{id}", "200", &[]),
        ("delete", "/v1/webhooks/{id}", "204", &[]),
        ("post", "/v1/webhooks/{id}/test", "200", &[]),
        (
            "get",
            "/v1/webhooks/{id}/deliveries",
            "200",
            &["status", "before", "limit"],
        ),
        (
            "post",
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            "200",
            &[],
        ),
    ];
    for (method, route, status, query) in used {
        let operation = &doc["paths"][route][method];
        assert!(
            operation.is_object(),
            "{method} {route} is not in openapi.json"
        );
        assert!(
            operation["responses"][status].is_object(),
            "{method} {route} does not answer {status}: {}",
            operation["responses"]
        );
        let documented: Vec<&str> = operation["parameters"]
            .as_array()
            .map(|params| {
                params
                    .iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        for name in *query {
            assert!(
                documented.contains(name),
                "{method} {route} has no query parameter {name}: {documented:?}"
            );
        }
    }
    // The HMAC body the client sends and the answer it reads (no shared wire type).
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["HmacRequest"]["required"],
        serde_json::json!(["input"])
    );
    assert_eq!(
        schemas["HmacResponse"]["required"],
        serde_json::json!(["hmac"])
    );
}
