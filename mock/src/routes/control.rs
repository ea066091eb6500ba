//! The control endpoints under `/__` (stats, faults, reset): how tests
//! drive and read the mock. Never counted, faulted or rate limited.

use std::time::Instant;

use serde_json::json;
use syncoord_server::Response;

use super::replies::json;
use super::state::lock;
use super::MockHandler;
use crate::Faults;

impl MockHandler {
    pub(super) fn control(&self, method: &str, what: &str, body: &[u8]) -> Response {
        let state = &*self.state;
        match (method, what) {
            ("GET", "stats") => match serde_json::to_value(state.stats()) {
                Ok(v) => json(200, v),
                Err(e) => json(500, json!({ "message": e.to_string() })),
            },
            ("GET", "faults") => {
                let current = lock(&state.faults).current(Instant::now());
                match serde_json::to_value(current) {
                    Ok(v) => json(200, v),
                    Err(e) => json(500, json!({ "message": e.to_string() })),
                }
            }
            ("POST", "faults") => match serde_json::from_slice::<Faults>(body) {
                Ok(faults) => {
                    let valid = (0.0..=1.0).contains(&faults.status_fraction)
                        && (0.0..=1.0).contains(&faults.drop_fraction);
                    if !valid {
                        return json(
                            400,
                            json!({ "message": "status_fraction and drop_fraction must be between 0 and 1" }),
                        );
                    }
                    state.set_faults(faults.clone());
                    match serde_json::to_value(faults) {
                        Ok(v) => json(200, v),
                        Err(e) => json(500, json!({ "message": e.to_string() })),
                    }
                }
                Err(e) => json(400, json!({ "message": format!("invalid faults: {e}") })),
            },
            ("POST", "reset") => {
                state.reset();
                Response::new(204, Vec::new())
            }
            _ => json(404, json!({ "message": "NotFound" })),
        }
    }
}
