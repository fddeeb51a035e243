//! The deploy manifests (deploy/cloudrun/*.yaml, compose.yaml) against the code they deploy: every
//! environment variable they set is one `.env.example` documents (as `NAME=` or `# NAME=`), every
//! probe path is one the process serves (the api's paths in `openapi.yaml`; the worker's
//! `/healthz`, `/readyz`, `/metrics`), and each runs one of the commands of DESIGN §9 (`api
//! serve`, `api migrate`, `worker`). The checks read files only; they start nothing. A second
//! test feeds them broken copies, so a check that stopped finding anything would fail too.

use std::{collections::BTreeSet, path::PathBuf};

use serde_yaml::Value;

/// The worker's own endpoints on `PORT` (worker/src/ops.rs); it has no OpenAPI document.
const WORKER_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The variables that must come from Secret Manager by reference, never as a value.
const SECRETS: [&str; 10] = [
    "AUTH_JWT_SECRET",
    "OAUTH_STATE_SECRET",
    "SOCIAL_TOKEN_ENCRYPTION_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "TWITTER_CLIENT_SECRET",
    "LINKEDIN_CLIENT_SECRET",
    "INSTAGRAM_CLIENT_SECRET",
    "FACEBOOK_APP_SECRET",
    "TIKTOK_CLIENT_SECRET",
];

/// Which process a manifest runs, and so which probe paths exist and which command it must name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Process {
    Api,
    Worker,
    Migrate,
}

impl Process {
    fn command(self) -> &'static str {
        match self {
            Process::Api => "api serve",
            Process::Worker => "worker",
            Process::Migrate => "api migrate",
        }
    }
}

/// The files the checks read, as text, so that the mutation test can hand in altered copies.
#[derive(Debug, Clone)]
struct Files {
    env_example: String,
    openapi: String,
    /// (file name, Cloud Run manifest) for deploy/cloudrun/*.yaml.
    cloudrun: Vec<(String, String)>,
    compose: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

impl Files {
    fn from_repo() -> Files {
        let cloudrun = ["api.yaml", "worker.yaml", "worker-service.yaml", "migrate-job.yaml"]
            .into_iter()
            .map(|name| (name.to_owned(), read(&format!("deploy/cloudrun/{name}"))))
            .collect();
        Files {
            env_example: read(".env.example"),
            openapi: read("openapi.yaml"),
            cloudrun,
            compose: read("compose.yaml"),
        }
    }

    fn with_cloudrun(mut self, name: &str, edit: impl Fn(&str) -> String) -> Files {
        let file = self.cloudrun.iter_mut().find(|(n, _)| n == name).expect("a manifest of that name");
        let edited = edit(&file.1);
        assert_ne!(edited, file.1, "the mutation of {name} changed nothing");
        file.1 = edited;
        self
    }

    fn with_compose(mut self, edit: impl Fn(&str) -> String) -> Files {
        let edited = edit(&self.compose);
        assert_ne!(edited, self.compose, "the mutation of compose.yaml changed nothing");
        self.compose = edited;
        self
    }
}

/// Names documented in `.env.example`, set (`NAME=`) or commented out (`# NAME=`).
fn documented_names(env_example: &str) -> BTreeSet<String> {
    env_example
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim_start();
            let (name, _) = line.split_once('=')?;
            let is_name = !name.is_empty()
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_name.then(|| name.to_owned())
        })
        .collect()
}

fn parse(name: &str, text: &str) -> Result<Value, String> {
    let mut value: Value = serde_yaml::from_str(text).map_err(|error| format!("{name}: not YAML: {error}"))?;
    value.apply_merge().map_err(|error| format!("{name}: bad merge key: {error}"))?;
    Ok(value)
}

fn openapi_paths(openapi: &str) -> Result<BTreeSet<String>, String> {
    let document = parse("openapi.yaml", openapi)?;
    let paths = document.get("paths").and_then(Value::as_mapping).ok_or("openapi.yaml: no paths")?;
    Ok(paths.keys().filter_map(Value::as_str).map(str::to_owned).collect())
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |value, key| value.get(key))?.as_str()
}

/// Every mapping under `value` that has a `containers` sequence: the pod specs of a manifest,
/// wherever its kind nests them (a Service's template, a Job's task template).
fn containers(value: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping {
                if key.as_str() == Some("containers") {
                    found.extend(child.as_sequence().into_iter().flatten());
                } else {
                    found.extend(containers(child));
                }
            }
        }
        Value::Sequence(items) => found.extend(items.iter().flat_map(containers)),
        _ => {}
    }
    found
}

/// A container's command and arguments, joined by spaces.
fn command_line(container: &Value, command: &str, args: &str) -> String {
    [command, args]
        .iter()
        .filter_map(|key| container.get(*key))
        .flat_map(|value| match value {
            Value::Sequence(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Value::String(text) => vec![text.clone()],
            _ => Vec::new(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The checks of one Cloud Run manifest. Returns what is wrong, one sentence each.
fn check_cloudrun(name: &str, text: &str, documented: &BTreeSet<String>, api_paths: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let manifest = match parse(name, text) {
        Ok(manifest) => manifest,
        Err(problem) => return vec![problem],
    };
    let (process, api_version, kind) = match name {
        "api.yaml" => (Process::Api, "serving.knative.dev/v1", "Service"),
        "worker.yaml" => (Process::Worker, "run.googleapis.com/v1", "WorkerPool"),
        "worker-service.yaml" => (Process::Worker, "serving.knative.dev/v1", "Service"),
        "migrate-job.yaml" => (Process::Migrate, "run.googleapis.com/v1", "Job"),
        other => return vec![format!("{other}: no check knows this manifest")],
    };
    if str_at(&manifest, &["apiVersion"]) != Some(api_version) || str_at(&manifest, &["kind"]) != Some(kind) {
        problems.push(format!("{name}: expected apiVersion {api_version}, kind {kind}"));
    }
    let containers = containers(&manifest);
    if containers.len() != 1 {
        problems.push(format!("{name}: expected one container, found {}", containers.len()));
    }
    for container in containers {
        let command = command_line(container, "command", "args");
        if command != process.command() {
            problems.push(format!("{name}: runs `{command}`, expected `{}`", process.command()));
        }
        if str_at(container, &["image"]).is_none() {
            problems.push(format!("{name}: the container names no image"));
        }
        let mut set = BTreeSet::new();
        for variable in container.get("env").and_then(Value::as_sequence).into_iter().flatten() {
            let Some(variable_name) = str_at(variable, &["name"]) else {
                problems.push(format!("{name}: an env entry has no name"));
                continue;
            };
            set.insert(variable_name.to_owned());
            if !documented.contains(variable_name) {
                problems.push(format!("{name}: env {variable_name} is not in .env.example"));
            }
            let by_reference = str_at(variable, &["valueFrom", "secretKeyRef", "name"]).is_some()
                && str_at(variable, &["valueFrom", "secretKeyRef", "key"]).is_some();
            if SECRETS.contains(&variable_name) && (!by_reference || variable.get("value").is_some()) {
                problems
                    .push(format!("{name}: {variable_name} must come from Secret Manager (valueFrom.secretKeyRef)"));
            }
        }
        // The migration needs the database and the three secrets that the configuration requires;
        // the api and the workers need every platform's too.
        let required = if process == Process::Migrate { &SECRETS[..5] } else { &SECRETS[..] };
        {
            for secret in required {
                if !set.contains(*secret) {
                    problems.push(format!("{name}: {secret} is not set"));
                }
            }
        }
        if set.contains("PORT") != (name == "worker.yaml") {
            problems.push(format!(
                "{name}: PORT {}",
                if name == "worker.yaml" {
                    "must be set: a worker pool gets none, and the worker serves its probes only on PORT"
                } else {
                    "is set by Cloud Run and must not be set in the manifest"
                }
            ));
        }
        let mut probes = BTreeSet::new();
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let Some(spec) = container.get(probe) else { continue };
            let Some(path) = str_at(spec, &["httpGet", "path"]) else {
                problems.push(format!("{name}: {probe} is not an HTTP probe"));
                continue;
            };
            probes.insert((probe, path.to_owned()));
            let exists = match process {
                Process::Api => api_paths.contains(path),
                Process::Worker => WORKER_PATHS.contains(&path),
                Process::Migrate => false,
            };
            if !exists {
                problems.push(format!("{name}: {probe} path {path} is not served by `{}`", process.command()));
            }
        }
        let wanted: &[(&str, &str)] = match name {
            "api.yaml" | "worker-service.yaml" => {
                &[("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
            }
            "worker.yaml" => &[("startupProbe", "/healthz"), ("livenessProbe", "/healthz")],
            _ => &[],
        };
        for (probe, path) in wanted {
            if !probes.contains(&(*probe, (*path).to_owned())) {
                problems.push(format!("{name}: expected a {probe} on {path}"));
            }
        }
    }
    let annotation = |key: &str| str_at(&manifest, &["spec", "template", "metadata", "annotations", key]);
    match name {
        "api.yaml" => {
            for key in ["autoscaling.knative.dev/minScale", "autoscaling.knative.dev/maxScale"] {
                if annotation(key).is_none() {
                    problems.push(format!("{name}: {key} is not set"));
                }
            }
            if manifest
                .get("spec")
                .and_then(|s| s.get("template"))
                .and_then(|t| t.get("spec"))
                .and_then(|s| s.get("containerConcurrency"))
                .is_none()
            {
                problems.push(format!("{name}: containerConcurrency is not set"));
            }
        }
        "worker-service.yaml" => {
            if annotation("run.googleapis.com/cpu-throttling") != Some("false") {
                problems.push(format!("{name}: CPU must be always allocated (cpu-throttling \"false\")"));
            }
            let min = annotation("autoscaling.knative.dev/minScale").and_then(|v| v.parse::<u32>().ok());
            if min.is_none_or(|min| min < 1) {
                problems.push(format!("{name}: minScale must be at least 1"));
            }
        }
        _ => {}
    }
    if str_at(&manifest, &["metadata", "annotations", "run.googleapis.com/launch-stage"]).is_none()
        && text.contains("readinessProbe")
    {
        problems.push(format!("{name}: readiness probes are Preview: set run.googleapis.com/launch-stage BETA"));
    }
    problems
}

/// The paths a compose healthcheck asks for: whatever follows `GET `.
fn requested_paths(test: &Value) -> Vec<String> {
    let text = match test {
        Value::Sequence(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "),
        Value::String(text) => text.clone(),
        _ => String::new(),
    };
    text.split("GET ").skip(1).filter_map(|rest| rest.split_whitespace().next()).map(str::to_owned).collect()
}

fn check_compose(text: &str, documented: &BTreeSet<String>, api_paths: &BTreeSet<String>) -> Vec<String> {
    let name = "compose.yaml";
    let mut problems = Vec::new();
    let compose = match parse(name, text) {
        Ok(compose) => compose,
        Err(problem) => return vec![problem],
    };
    let Some(services) = compose.get("services").and_then(Value::as_mapping) else {
        return vec![format!("{name}: no services")];
    };
    let expected = [
        ("migrate", Process::Migrate),
        ("api", Process::Api),
        ("worker-1", Process::Worker),
        ("worker-2", Process::Worker),
    ];
    for wanted in ["postgres", "redis", "migrate", "api", "worker-1", "worker-2"] {
        if !services.contains_key(wanted) {
            problems.push(format!("{name}: no service {wanted}"));
        }
    }
    for (service_name, service) in services {
        let service_name = service_name.as_str().unwrap_or_default();
        let herald = str_at(service, &["build", "dockerfile"]) == Some("deploy/Dockerfile");
        let Some(process) = expected.iter().find(|(n, _)| *n == service_name).map(|(_, p)| *p) else {
            if herald {
                problems.push(format!("{name}: service {service_name} runs Herald but no check knows it"));
            }
            continue;
        };
        if !herald {
            problems.push(format!("{name}: {service_name} is not built from deploy/Dockerfile"));
        }
        let command = command_line(service, "entrypoint", "command");
        if command != process.command() {
            problems.push(format!("{name}: {service_name} runs `{command}`, expected `{}`", process.command()));
        }
        let environment = service.get("environment").and_then(Value::as_mapping);
        for variable in environment.into_iter().flat_map(|m| m.keys()).filter_map(Value::as_str) {
            if !documented.contains(variable) {
                problems.push(format!("{name}: {service_name} sets {variable}, which is not in .env.example"));
            }
        }
        let sets_port = environment.is_some_and(|m| m.contains_key("PORT"));
        if process == Process::Worker && !sets_port {
            problems.push(format!("{name}: {service_name} must set PORT to serve its probes"));
        }
        match service.get("healthcheck").and_then(|h| h.get("test")) {
            Some(test) => {
                let paths = requested_paths(test);
                if paths.is_empty() {
                    problems.push(format!("{name}: {service_name}'s healthcheck asks for no path"));
                }
                for path in paths {
                    let exists = match process {
                        Process::Api => api_paths.contains(&path),
                        Process::Worker => WORKER_PATHS.contains(&path.as_str()),
                        Process::Migrate => false,
                    };
                    if !exists {
                        problems.push(format!("{name}: {service_name}'s healthcheck path {path} is not served"));
                    }
                }
            }
            None if process != Process::Migrate => problems.push(format!("{name}: {service_name} has no healthcheck")),
            None => {}
        }
        let condition = |on: &str| str_at(service, &["depends_on", on, "condition"]).map(str::to_owned);
        let wanted = match process {
            Process::Migrate => vec![("postgres", "service_healthy"), ("redis", "service_healthy")],
            _ => vec![("migrate", "service_completed_successfully")],
        };
        for (on, state) in wanted {
            if condition(on).as_deref() != Some(state) {
                problems.push(format!("{name}: {service_name} must depend on {on} with condition {state}"));
            }
        }
    }
    let redis_command = services.get("redis").map(|s| command_line(s, "entrypoint", "command")).unwrap_or_default();
    if !redis_command.contains("--appendonly yes") {
        problems.push(format!("{name}: redis must run with --appendonly yes"));
    }
    problems
}

fn check(files: &Files) -> Vec<String> {
    let documented = documented_names(&files.env_example);
    let api_paths = match openapi_paths(&files.openapi) {
        Ok(paths) => paths,
        Err(problem) => return vec![problem],
    };
    let mut problems: Vec<String> =
        files.cloudrun.iter().flat_map(|(name, text)| check_cloudrun(name, text, &documented, &api_paths)).collect();
    problems.extend(check_compose(&files.compose, &documented, &api_paths));
    problems
}

#[test]
fn manifests_use_documented_names_served_paths_and_the_design_commands() {
    let problems = check(&Files::from_repo());
    assert!(problems.is_empty(), "deploy manifests:\n  {}", problems.join("\n  "));
}

/// Each kind of check, shown to fail on a broken copy: a name `.env.example` lacks, a probe path
/// nothing serves, a wrong command, a secret given as a value, PORT set on a service.
#[test]
fn the_checks_catch_a_broken_manifest() {
    let files = Files::from_repo();
    let cases: Vec<(Files, &str)> = vec![
        (
            files.clone().with_cloudrun("api.yaml", |t| t.replacen("name: LOG_FORMAT", "name: LOG_FROMAT", 1)),
            "api.yaml: env LOG_FROMAT is not in .env.example",
        ),
        (
            files.clone().with_cloudrun("worker.yaml", |t| t.replacen("name: WORKER_CONCURRENCY", "name: WORKER_THREADS", 1)),
            "worker.yaml: env WORKER_THREADS is not in .env.example",
        ),
        (
            files.clone().with_cloudrun("api.yaml", |t| t.replacen("path: /readyz", "path: /ready", 1)),
            "api.yaml: readinessProbe path /ready is not served by `api serve`",
        ),
        (
            files.clone().with_cloudrun("worker-service.yaml", |t| t.replacen("path: /healthz", "path: /livez", 1)),
            "worker-service.yaml: startupProbe path /livez is not served by `worker`",
        ),
        (
            files.clone().with_cloudrun("migrate-job.yaml", |t| t.replacen("args: [\"migrate\"]", "args: [\"migrations\"]", 1)),
            "migrate-job.yaml: runs `api migrations`, expected `api migrate`",
        ),
        (
            files.clone().with_cloudrun("api.yaml", |t| {
                t.replacen(
                    "            - name: LOG_FORMAT\n",
                    "            - name: PORT\n              value: \"8080\"\n            - name: LOG_FORMAT\n",
                    1,
                )
            }),
            "api.yaml: PORT is set by Cloud Run and must not be set in the manifest",
        ),
        (
            files.clone().with_cloudrun("api.yaml", |t| {
                t.replacen(
                    "- name: REDIS_URL\n              valueFrom:\n                secretKeyRef: { name: herald-redis-url, key: latest }",
                    "- name: REDIS_URL\n              value: redis://10.0.0.3:6379",
                    1,
                )
            }),
            "api.yaml: REDIS_URL must come from Secret Manager (valueFrom.secretKeyRef)",
        ),
        (
            files.clone().with_compose(|t| t.replacen("      PORT: \"9002\"\n", "      PORT: \"9002\"\n      WORKER_THREADS: \"8\"\n", 1)),
            "compose.yaml: worker-2 sets WORKER_THREADS, which is not in .env.example",
        ),
        (
            files.clone().with_compose(|t| t.replacen("GET /readyz", "GET /ready", 1)),
            "compose.yaml: api's healthcheck path /ready is not served",
        ),
        (
            files.clone().with_compose(|t| t.replacen("command: [\"worker\"]", "command: [\"api\", \"worker\"]", 1)),
            "compose.yaml: worker-1 runs `api worker`, expected `worker`",
        ),
        (
            Files { env_example: files.env_example.replace("READYZ_NO_WORKER_SECS=", "READYZ_NO_WORKERS_SECS="), ..files.clone() },
            "api.yaml: env READYZ_NO_WORKER_SECS is not in .env.example",
        ),
    ];
    for (broken, expected) in cases {
        let problems = check(&broken);
        assert!(
            problems.iter().any(|p| p == expected),
            "expected the problem `{expected}`, got:\n  {}",
            problems.join("\n  ")
        );
    }
}
