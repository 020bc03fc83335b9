//! The live dashboard: the static files of `api.dashboard_dir` (dashboards/live in the
//! repository) served at `/`, with the ECharts build that `scripts/setup` installs from npm
//! under its `node_modules`. Only these files are served, never the rest of the directory.
//! The page itself talks to nothing but the public API.

use std::path::{Path, PathBuf};

use axum::routing::{get, get_service, MethodRouter};
use axum::Router;
use tower_http::services::ServeFile;

use crate::{ApiError, ApiState};

/// URL path -> file under the dashboard directory.
const FILES: [(&str, &str); 4] = [
    ("/", "index.html"),
    ("/app.js", "app.js"),
    ("/style.css", "style.css"),
    (
        "/vendor/echarts.min.js",
        "node_modules/echarts/dist/echarts.min.js",
    ),
];

/// The dashboard's routes. A file missing at start-up answers 404 naming it (the checkout
/// has no dashboard, or `scripts/setup` has not installed ECharts yet).
pub(crate) fn routes(dir: &Path) -> Router<ApiState> {
    let mut router = Router::new();
    for (route, file) in FILES {
        let path = dir.join(file);
        let service: MethodRouter<ApiState> = if path.is_file() {
            get_service(ServeFile::new(&path))
        } else {
            tracing::warn!(path = %path.display(), "dashboard file missing; `/` will not work");
            get(move || missing(path.clone()))
        };
        router = router.route(route, service);
    }
    router
}

async fn missing(path: PathBuf) -> ApiError {
    ApiError::not_found(format!(
        "the dashboard is not installed: {} is missing (run scripts/setup from the repository, or set api.dashboard_dir)",
        path.display()
    ))
}
