//! `worker`: consumes the publish queue. Same environment as the api; any number may run at once.
//! A shim over the library.

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
    worker::run(app, shared::app::shutdown_signal()).await;
    ExitCode::SUCCESS
}
