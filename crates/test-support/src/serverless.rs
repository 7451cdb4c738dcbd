//! A strict stand-in for the Redshift Serverless API, which moto does not serve: an HTTP
//! server on 127.0.0.1 speaking the service's protocol (AWS JSON 1.1, `X-Amz-Target:
//! RedshiftServerless.<Operation>`, SigV4 signed for `redshift-serverless`). Every request is
//! checked against the API reference before it is answered: the operation must be one the
//! stub knows, each field one of the operation's with the documented type, every required
//! field present, names 3 to 64 of `[a-z0-9-]`, and the rules the service enforces (a
//! workgroup needs an available namespace, one workgroup per namespace, no namespace deleted
//! under a workgroup, base capacity and port in range, credentials for 900 to 3600 s from an
//! available workgroup). A request that fails a check is answered as the service answers
//! (`ValidationException`, `ResourceNotFoundException`, `ConflictException`) and, unless it
//! only found nothing, kept in [`ServerlessStub::refused`], so a test can assert that sparkify sent nothing the service
//! would refuse. Answers have the documented shapes (`namespace`, `workgroup`, `dbUser`…).
//!
//! A workgroup is `CREATING` for two looks, then `AVAILABLE`; a deleted workgroup or
//! namespace is `DELETING` for one look, then gone, so callers must wait as they must on AWS.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// The password `GetCredentials` hands out.
pub const PASSWORD: &str = "stub-temporary-password";

/// What a field of a request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A namespace or workgroup name: 3 to 64 of `[a-z0-9-]`.
    Name,
    Str,
    Int,
    Bool,
    Strings,
    Objects,
    Object,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    shape: Shape,
    required: bool,
}

const fn req(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        shape,
        required: true,
    }
}

const fn opt(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        shape,
        required: false,
    }
}

use Shape::{Bool, Int, Name, Object, Objects, Str, Strings};

/// The request fields of each operation the stub serves, from the API reference.
fn fields(operation: &str) -> Option<&'static [Field]> {
    Some(match operation {
        "CreateNamespace" => CREATE_NAMESPACE,
        "GetNamespace" => GET_NAMESPACE,
        "DeleteNamespace" => DELETE_NAMESPACE,
        "CreateWorkgroup" => CREATE_WORKGROUP,
        "GetWorkgroup" | "DeleteWorkgroup" => BY_WORKGROUP_NAME,
        "GetCredentials" => GET_CREDENTIALS,
        _ => return None,
    })
}

const CREATE_NAMESPACE: &[Field] = &[
    req("namespaceName", Name),
    opt("adminUsername", Str),
    opt("adminUserPassword", Str),
    opt("dbName", Str),
    opt("kmsKeyId", Str),
    opt("defaultIamRoleArn", Str),
    opt("iamRoles", Strings),
    opt("logExports", Strings),
    opt("tags", Objects),
    opt("manageAdminPassword", Bool),
    opt("adminPasswordSecretKmsKeyId", Str),
    opt("redshiftIdcApplicationArn", Str),
];

const GET_NAMESPACE: &[Field] = &[req("namespaceName", Name)];

const DELETE_NAMESPACE: &[Field] = &[
    req("namespaceName", Name),
    opt("finalSnapshotName", Str),
    opt("finalSnapshotRetentionPeriod", Int),
];

const CREATE_WORKGROUP: &[Field] = &[
    req("workgroupName", Name),
    req("namespaceName", Name),
    opt("baseCapacity", Int),
    opt("enhancedVpcRouting", Bool),
    opt("configParameters", Objects),
    opt("securityGroupIds", Strings),
    opt("subnetIds", Strings),
    opt("publiclyAccessible", Bool),
    opt("tags", Objects),
    opt("port", Int),
    opt("maxCapacity", Int),
    opt("pricePerformanceTarget", Object),
    opt("ipAddressType", Str),
    opt("trackName", Str),
    opt("extraComputeForAutomaticOptimization", Bool),
];

const BY_WORKGROUP_NAME: &[Field] = &[req("workgroupName", Name)];

const GET_CREDENTIALS: &[Field] = &[
    opt("dbName", Str),
    opt("durationSeconds", Int),
    opt("workgroupName", Name),
    opt("customDomainName", Str),
];

/// Whether `value` has `shape`; why not otherwise.
fn check(shape: Shape, value: &Value) -> Result<(), String> {
    let ok = match shape {
        Name => {
            let Some(name) = value.as_str() else {
                return Err("is not a string".into());
            };
            if !(3..=64).contains(&name.len())
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(format!(
                    "{name:?} fails to satisfy the constraint: 3 to 64 characters of [a-z0-9-]"
                ));
            }
            true
        }
        Str => value.is_string(),
        Int => value.is_i64(),
        Bool => value.is_boolean(),
        Strings => value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        Objects => value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_object)),
        Object => value.is_object(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("is not of type {shape:?}"))
    }
}

/// A refusal: the error's type and message.
type Refusal = (&'static str, String);

fn invalid(message: impl Into<String>) -> Refusal {
    ("ValidationException", message.into())
}

/// A namespace or a workgroup, with how many more looks it stays in its passing state.
#[derive(Debug, Clone)]
struct Resource {
    body: Value,
    looks: u32,
}

#[derive(Debug, Default)]
struct State {
    namespaces: BTreeMap<String, Resource>,
    workgroups: BTreeMap<String, Resource>,
    calls: Vec<(String, Value)>,
    refused: Vec<String>,
}

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const CREATED: &str = "2026-12-07T10:00:00Z";

impl State {
    /// `name`'s resource after one more look: a passing state ends, a deleted one goes.
    fn look(map: &mut BTreeMap<String, Resource>, name: &str, settled: &str) -> Option<Value> {
        let r = map.get_mut(name)?;
        if r.looks > 0 {
            r.looks -= 1;
            let body = r.body.clone();
            if r.looks == 0 {
                if body["status"] == "DELETING" {
                    map.remove(name);
                } else {
                    r.body["status"] = json!(settled);
                }
            }
            return Some(body);
        }
        Some(r.body.clone())
    }

    fn namespace(&mut self, name: &str) -> Result<Value, Refusal> {
        State::look(&mut self.namespaces, name, "AVAILABLE").ok_or_else(|| {
            (
                "ResourceNotFoundException",
                format!("Namespace {name} is not found"),
            )
        })
    }

    fn workgroup(&mut self, name: &str) -> Result<Value, Refusal> {
        State::look(&mut self.workgroups, name, "AVAILABLE").ok_or_else(|| {
            (
                "ResourceNotFoundException",
                format!("Workgroup {name} is not found"),
            )
        })
    }

    fn answer(&mut self, operation: &str, input: &Value, user: &str) -> Result<Value, Refusal> {
        let text = |k: &str| input[k].as_str().unwrap_or_default().to_owned();
        match operation {
            "CreateNamespace" => {
                let name = text("namespaceName");
                if self.namespaces.contains_key(&name) {
                    return Err(("ConflictException", format!("Namespace {name} exists")));
                }
                if input.get("adminUserPassword").is_some()
                    && input["manageAdminPassword"] == json!(true)
                {
                    return Err(invalid(
                        "You can't use adminUserPassword if manageAdminPassword is true",
                    ));
                }
                if let Some(pw) = input["adminUserPassword"].as_str()
                    && !(8..=64).contains(&pw.len())
                {
                    return Err(invalid("adminUserPassword must be 8 to 64 characters"));
                }
                let default_role = &input["defaultIamRoleArn"];
                let roles = input["iamRoles"].as_array().cloned().unwrap_or_default();
                if !default_role.is_null() && !roles.contains(default_role) {
                    return Err(invalid(
                        "The default IAM role must be one of the namespace's iamRoles",
                    ));
                }
                let body = json!({
                    "namespaceName": name,
                    "namespaceId": format!("ns-{}", self.namespaces.len() + 1),
                    "namespaceArn": format!(
                        "arn:aws:redshift-serverless:{REGION}:{ACCOUNT}:namespace/{name}"
                    ),
                    "adminUsername": input["adminUsername"].as_str().unwrap_or("admin"),
                    "dbName": input["dbName"].as_str().unwrap_or("dev"),
                    "defaultIamRoleArn": default_role,
                    "iamRoles": roles,
                    "logExports": [],
                    "status": "AVAILABLE",
                    "creationDate": CREATED,
                });
                self.namespaces.insert(
                    name,
                    Resource {
                        body: body.clone(),
                        looks: 0,
                    },
                );
                Ok(json!({ "namespace": body }))
            }
            "GetNamespace" => Ok(json!({ "namespace": self.namespace(&text("namespaceName"))? })),
            "DeleteNamespace" => {
                let name = text("namespaceName");
                if self
                    .workgroups
                    .values()
                    .any(|w| w.body["namespaceName"] == json!(name))
                {
                    return Err((
                        "ConflictException",
                        format!("Namespace {name} has a workgroup; delete it first"),
                    ));
                }
                let mut body = self.namespace(&name)?;
                body["status"] = json!("DELETING");
                self.namespaces.insert(
                    name,
                    Resource {
                        body: body.clone(),
                        looks: 1,
                    },
                );
                Ok(json!({ "namespace": body }))
            }
            "CreateWorkgroup" => {
                let name = text("workgroupName");
                let namespace = text("namespaceName");
                if self.workgroups.contains_key(&name) {
                    return Err(("ConflictException", format!("Workgroup {name} exists")));
                }
                match self.namespaces.get(&namespace) {
                    None => {
                        return Err((
                            "ResourceNotFoundException",
                            format!("Namespace {namespace} is not found"),
                        ));
                    }
                    Some(ns) if ns.body["status"] != "AVAILABLE" => {
                        return Err((
                            "ConflictException",
                            format!("Namespace {namespace} is not available"),
                        ));
                    }
                    Some(_) => {}
                }
                if self
                    .workgroups
                    .values()
                    .any(|w| w.body["namespaceName"] == json!(namespace))
                {
                    return Err((
                        "ConflictException",
                        format!("Namespace {namespace} already has a workgroup"),
                    ));
                }
                let capacity = input["baseCapacity"].as_i64().unwrap_or(128);
                if !(capacity == 4 || (capacity % 8 == 0 && (8..=1024).contains(&capacity))) {
                    return Err(invalid(format!(
                        "baseCapacity {capacity} is not 4, or 8 to 1024 in steps of 8"
                    )));
                }
                let port = input["port"].as_i64().unwrap_or(5439);
                if !((5431..=5455).contains(&port) || (8191..=8215).contains(&port)) {
                    return Err(invalid(format!(
                        "port {port} is not within 5431-5455 or 8191-8215"
                    )));
                }
                let body = json!({
                    "workgroupName": name,
                    "workgroupId": format!("wg-{}", self.workgroups.len() + 1),
                    "workgroupArn": format!(
                        "arn:aws:redshift-serverless:{REGION}:{ACCOUNT}:workgroup/{name}"
                    ),
                    "namespaceName": namespace,
                    "baseCapacity": capacity,
                    "enhancedVpcRouting": input["enhancedVpcRouting"].as_bool().unwrap_or(false),
                    "configParameters": [],
                    "securityGroupIds": input["securityGroupIds"].as_array().cloned().unwrap_or_default(),
                    "subnetIds": ["subnet-0a1b2c3d"],
                    "publiclyAccessible": input["publiclyAccessible"].as_bool().unwrap_or(false),
                    "port": port,
                    "endpoint": {
                        "address": format!("{name}.{ACCOUNT}.{REGION}.redshift-serverless.amazonaws.com"),
                        "port": port,
                        "vpcEndpoints": [],
                    },
                    "status": "CREATING",
                    "creationDate": CREATED,
                });
                self.workgroups.insert(
                    name,
                    Resource {
                        body: body.clone(),
                        looks: 2,
                    },
                );
                Ok(json!({ "workgroup": body }))
            }
            "GetWorkgroup" => Ok(json!({ "workgroup": self.workgroup(&text("workgroupName"))? })),
            "DeleteWorkgroup" => {
                let name = text("workgroupName");
                let mut body = self.workgroup(&name)?;
                if body["status"] == "DELETING" {
                    return Err(("ConflictException", format!("Workgroup {name} is deleting")));
                }
                body["status"] = json!("DELETING");
                self.workgroups.insert(
                    name,
                    Resource {
                        body: body.clone(),
                        looks: 1,
                    },
                );
                Ok(json!({ "workgroup": body }))
            }
            "GetCredentials" => {
                let Some(name) = input["workgroupName"].as_str() else {
                    return Err(invalid(
                        "Either workgroupName or customDomainName is required",
                    ));
                };
                let seconds = input["durationSeconds"].as_i64().unwrap_or(900);
                if !(900..=3600).contains(&seconds) {
                    return Err(invalid(format!(
                        "durationSeconds {seconds} is not 900 to 3600"
                    )));
                }
                let w = self.workgroup(name)?;
                if w["status"] != "AVAILABLE" {
                    return Err((
                        "ConflictException",
                        format!("Workgroup {name} is not available"),
                    ));
                }
                let now = 1_796_637_600_i64;
                Ok(json!({
                    "dbUser": format!("IAM:{user}"),
                    "dbPassword": PASSWORD,
                    "expiration": now + seconds,
                    "nextRefreshTime": now + seconds - 60,
                }))
            }
            _ => Err(("UnknownOperationException", operation.to_owned())),
        }
    }
}

/// A request as read off the wire.
#[derive(Debug, Default)]
struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let mut request = Request {
        method: parts.next()?.to_owned(),
        path: parts.next()?.to_owned(),
        ..Request::default()
    };
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (k, v) = header.split_once(':')?;
        request
            .headers
            .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let length = request
        .headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).ok()?;
    Some(request)
}

/// Checks what every request must be; the operation and its input.
fn validate(request: &Request) -> Result<(String, Value), Refusal> {
    if request.method != "POST" || request.path != "/" {
        return Err(invalid(format!(
            "{} {}: the service takes POST /",
            request.method, request.path
        )));
    }
    let header = |k: &str| request.headers.get(k).map_or("", String::as_str);
    if header("content-type") != "application/x-amz-json-1.1" {
        return Err(invalid(format!(
            "Content-Type {:?} is not application/x-amz-json-1.1",
            header("content-type")
        )));
    }
    let authorization = header("authorization");
    if !authorization.starts_with("AWS4-HMAC-SHA256 ")
        || !authorization.contains("/redshift-serverless/aws4_request")
        || header("x-amz-date").is_empty()
    {
        return Err((
            "MissingAuthenticationTokenException",
            format!("not signed with SigV4 for redshift-serverless: {authorization:?}"),
        ));
    }
    let operation = header("x-amz-target")
        .strip_prefix("RedshiftServerless.")
        .ok_or_else(|| invalid(format!("X-Amz-Target {:?}", header("x-amz-target"))))?
        .to_owned();
    let known = fields(&operation).ok_or_else(|| {
        (
            "UnknownOperationException",
            format!("the stub does not serve {operation}"),
        )
    })?;
    let input: Value = serde_json::from_slice(&request.body)
        .map_err(|e| ("SerializationException", format!("body: {e}")))?;
    let Some(object) = input.as_object() else {
        return Err(("SerializationException", "body is not an object".into()));
    };
    for (key, value) in object {
        let field = known
            .iter()
            .find(|f| f.name == key)
            .ok_or_else(|| invalid(format!("{operation}: unknown field {key}")))?;
        check(field.shape, value).map_err(|why| {
            invalid(format!(
                "1 validation error detected: Value at '{key}' {why}"
            ))
        })?;
    }
    if let Some(missing) = known
        .iter()
        .find(|f| f.required && !object.contains_key(f.name))
    {
        return Err(invalid(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: \
             Member must not be null",
            missing.name
        )));
    }
    Ok((operation, input))
}

/// The signing user: the access key of the request's credential scope.
fn signer(request: &Request) -> String {
    request
        .headers
        .get("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or("unknown")
        .to_owned()
}

fn respond(stream: &mut TcpStream, status: &str, body: &Value, error: Option<&str>) -> bool {
    let body = body.to_string();
    let error = error.map_or(String::new(), |e| format!("X-Amzn-ErrorType: {e}\r\n"));
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n{error}\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .is_ok()
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let answered = validate(&request).and_then(|(operation, input)| {
            let mut state = state.lock().unwrap();
            state.calls.push((operation.clone(), input.clone()));
            state.answer(&operation, &input, &signer(&request))
        });
        let sent = match answered {
            Ok(body) => respond(&mut writer, "200 OK", &body, None),
            Err((kind, message)) => {
                // Not finding what was looked for is an answer, not a refusal.
                if kind != "ResourceNotFoundException" {
                    state
                        .lock()
                        .unwrap()
                        .refused
                        .push(format!("{kind}: {message}"));
                }
                let body = json!({ "__type": kind, "message": message });
                respond(&mut writer, "400 Bad Request", &body, Some(kind))
            }
        };
        if !sent {
            return;
        }
    }
}

/// The stub, serving until the test process ends.
#[derive(Debug, Clone)]
pub struct ServerlessStub {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl ServerlessStub {
    pub fn start() -> ServerlessStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        ServerlessStub {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// The variable that points sparkify's Redshift Serverless client here.
    pub fn env(&self) -> (&'static str, String) {
        (
            "AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS",
            self.endpoint.clone(),
        )
    }

    /// The operations asked so far, in order, that passed the protocol checks.
    pub fn operations(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.calls.iter().map(|(op, _)| op.clone()).collect()
    }

    /// The input of the last call of `operation`.
    pub fn last_input(&self, operation: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        state
            .calls
            .iter()
            .rev()
            .find(|(op, _)| op == operation)
            .map(|(_, input)| input.clone())
    }

    /// Every request answered with an error other than `ResourceNotFoundException` (how an
    /// absent namespace or workgroup is found absent): `Type: message`.
    pub fn refused(&self) -> Vec<String> {
        self.state.lock().unwrap().refused.clone()
    }

    /// Forgets the calls and refusals so far (what exists stays).
    pub fn clear_log(&self) {
        let mut state = self.state.lock().unwrap();
        state.calls.clear();
        state.refused.clear();
    }

    /// The workgroup as the service holds it, if it exists.
    pub fn workgroup(&self, name: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        state.workgroups.get(name).map(|r| r.body.clone())
    }

    /// The namespace as the service holds it, if it exists.
    pub fn namespace(&self, name: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        state.namespaces.get(name).map(|r| r.body.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `body` as `operation`, signed-looking unless `signed` is false; status and body.
    fn send(stub: &ServerlessStub, operation: &str, body: &str, signed: bool) -> (u16, Value) {
        let mut stream = TcpStream::connect(stub.endpoint.trim_start_matches("http://")).unwrap();
        let auth = if signed {
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/\
             redshift-serverless/aws4_request, SignedHeaders=host, Signature=0\r\n\
             X-Amz-Date: 20261207T100000Z\r\n"
        } else {
            ""
        };
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n\
             X-Amz-Target: RedshiftServerless.{operation}\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (
            status.split_whitespace().nth(1).unwrap().parse().unwrap(),
            serde_json::from_slice(&body).unwrap(),
        )
    }

    #[test]
    fn it_refuses_what_the_service_refuses() {
        let stub = ServerlessStub::start();
        for (operation, body, signed, want) in [
            ("GetWorkgroup", "{}", true, "Value null at 'workgroupName'"),
            (
                "GetWorkgroup",
                r#"{"workgroupName":"Big_One"}"#,
                true,
                "[a-z0-9-]",
            ),
            (
                "GetWorkgroup",
                r#"{"workgroupName":"wg","x":1}"#,
                true,
                "'workgroupName'",
            ),
            (
                "GetWorkgroup",
                r#"{"workgroupName":"wg1","x":1}"#,
                true,
                "unknown field x",
            ),
            (
                "CreateNamespace",
                r#"{"namespaceName":"ns1","iamRoles":"r"}"#,
                true,
                "Strings",
            ),
            (
                "CreateWorkgroup",
                r#"{"workgroupName":"wg1"}"#,
                true,
                "'namespaceName'",
            ),
            (
                "CreateWorkgroup",
                r#"{"workgroupName":"wg1","namespaceName":"none"}"#,
                true,
                "not found",
            ),
            ("ListWorkgroups", "{}", true, "does not serve"),
            ("GetWorkgroup", r#"{"workgroupName":"wg1"}"#, false, "SigV4"),
        ] {
            let (status, answer) = send(&stub, operation, body, signed);
            assert_eq!(status, 400, "{operation} {body}: {answer}");
            assert!(
                answer["message"].as_str().unwrap().contains(want),
                "{operation} {body}: {answer}"
            );
        }
        // All but the namespace not found.
        assert_eq!(stub.refused().len(), 8, "{:?}", stub.refused());
        // The rules between resources.
        let ok = |op: &str, body: &str| {
            let (status, answer) = send(&stub, op, body, true);
            assert_eq!(status, 200, "{op} {body}: {answer}");
            answer
        };
        ok("CreateNamespace", r#"{"namespaceName":"ns1"}"#);
        let (status, answer) = send(
            &stub,
            "CreateWorkgroup",
            r#"{"workgroupName":"wg1","namespaceName":"ns1","baseCapacity":12}"#,
            true,
        );
        assert_eq!(status, 400, "{answer}");
        let made = ok(
            "CreateWorkgroup",
            r#"{"workgroupName":"wg1","namespaceName":"ns1","baseCapacity":8}"#,
        );
        assert_eq!(made["workgroup"]["status"], "CREATING");
        let (status, answer) = send(&stub, "DeleteNamespace", r#"{"namespaceName":"ns1"}"#, true);
        assert_eq!(answer["__type"], "ConflictException", "{status} {answer}");
        let (_, answer) = send(&stub, "GetCredentials", r#"{"workgroupName":"wg1"}"#, true);
        assert_eq!(
            answer["__type"], "ConflictException",
            "not available yet: {answer}"
        );
        ok("GetWorkgroup", r#"{"workgroupName":"wg1"}"#);
        ok("GetWorkgroup", r#"{"workgroupName":"wg1"}"#);
        let wg = ok("GetWorkgroup", r#"{"workgroupName":"wg1"}"#);
        assert_eq!(wg["workgroup"]["status"], "AVAILABLE");
        let creds = ok(
            "GetCredentials",
            r#"{"workgroupName":"wg1","dbName":"dev","durationSeconds":900}"#,
        );
        assert_eq!(creds["dbUser"], "IAM:testing");
    }
}
