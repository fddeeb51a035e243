//! `worker`: consumes the publish queue. Same environment as the api; any number may run at once.
//! With `PORT` set it also serves `/healthz`, `/readyz` and `/metrics` there. A shim over the
//! library; exits 0 after a SIGTERM drain.

use std::process::ExitCode;

use shared::{
    App,
    app::Schema,
    config::{Settings, Storage},
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("worker: {error}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(settings.log_format);
    let schema = match settings.storage {
        Storage::Embedded { .. } => Schema::Migrate,
        Storage::External { .. } => Schema::RequireCurrent,
    };
    let app = match App::start(settings, schema).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("worker: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Only when PORT is given: a worker beside an api on one host must not take the api's 8080.
    if std::env::var_os("PORT").is_some() {
        let listener = match tokio::net::TcpListener::bind(("0.0.0.0", app.settings.port)).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("worker: cannot listen on port {}: {error}", app.settings.port);
                return ExitCode::FAILURE;
            }
        };
        // Served until the process exits, so the probes answer during the drain too.
        tokio::spawn(worker::ops::serve(app.clone(), listener, std::future::pending()));
    }
    worker::run(app, shared::app::shutdown_signal()).await;
    ExitCode::SUCCESS
}
