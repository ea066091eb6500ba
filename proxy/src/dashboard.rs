//! The live dashboard, `GET /dashboard`: one HTML page and its static
//! assets, embedded in the binary (and the Worker's wasm) with
//! `include_str!`, so the page needs no build step, no CDN and no request
//! to any host but the coordinator. Its script polls the stats endpoint
//! ([`crate::endpoints::STATS_PATH`]) every 1.5 s and keeps the last five
//! minutes in the page; charts are drawn by uPlot (MIT, vendored from npm
//! by `scripts/vendor-uplot.sh` into `proxy/assets/vendor/uplot/`).
//!
//! Every answer here carries a strict `Content-Security-Policy`
//! (`'self'` only, no inline script), so a page served by the
//! coordinator cannot be made to talk to anything else.

/// The page.
pub const DASHBOARD_PATH: &str = "/dashboard";
/// Where its assets live: `/dashboard/assets/<name>`.
pub const ASSETS_PREFIX: &str = "/dashboard/assets/";

/// One embedded file served under [`ASSETS_PREFIX`].
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    /// The file name after the prefix, e.g. `dashboard.js`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

/// Every asset the page references, and nothing else.
pub static ASSETS: &[Asset] = &[
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/dashboard.js"),
    },
    Asset {
        name: "dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/dashboard.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        name: "uPlot-LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("../assets/vendor/uplot/LICENSE"),
    },
];

const PAGE: &str = include_str!("../assets/dashboard.html");

/// Only this origin, no inline script or style sheet, no frames, no
/// forms: the page reads the stats endpoint and draws.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The asset a path names, if any (the query is ignored).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let name = path.strip_prefix(ASSETS_PREFIX)?;
    ASSETS.iter().find(|a| a.name == name)
}

fn static_response(content_type: &str, body: &str) -> syncoord_core::Response {
    syncoord_core::Response::new(200, body)
        .with_header("Content-Type", content_type)
        .with_header("Cache-Control", "no-cache")
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Content-Security-Policy", CSP)
        .with_header("Referrer-Policy", "no-referrer")
}

/// The page itself.
pub fn page_response() -> syncoord_core::Response {
    static_response("text/html; charset=utf-8", PAGE)
}

/// One asset.
pub fn asset_response(asset: &Asset) -> syncoord_core::Response {
    static_response(asset.content_type, asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_exactly_the_embedded_assets() {
        let referenced: Vec<&str> = PAGE
            .split(ASSETS_PREFIX)
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or(""))
            .collect();
        for a in ASSETS {
            assert!(
                referenced.contains(&a.name) || a.name.ends_with(".txt"),
                "{} is embedded but not referenced",
                a.name
            );
        }
        for name in referenced {
            assert!(
                asset(&format!("{ASSETS_PREFIX}{name}")).is_some(),
                "the page references {name}, which is not embedded"
            );
        }
    }

    #[test]
    fn assets_are_found_by_path_only() {
        assert!(asset("/dashboard/assets/dashboard.js").is_some());
        assert!(asset("/dashboard/assets/../dashboard.js").is_none());
        assert!(asset("/dashboard/assets/").is_none());
        assert!(asset("/dashboard").is_none());
        use crate::endpoints::{endpoint, Endpoint};
        assert_eq!(endpoint("GET", "/dashboard?x=1"), Some(Endpoint::Dashboard));
        assert!(matches!(
            endpoint("HEAD", "/dashboard/assets/uPlot.min.css"),
            Some(Endpoint::Asset(a)) if a.content_type.starts_with("text/css")
        ));
        assert_eq!(
            endpoint("GET", "/dashboard/assets/nope.js"),
            Some(Endpoint::NoSuchAsset)
        );
        assert_eq!(Endpoint::NoSuchAsset.render::<&str>(&[]).status, 404);
        assert_eq!(endpoint("GET", "/dashboard/"), None);
        assert_eq!(endpoint("GET", "/dashboards"), None);
        assert_eq!(endpoint("POST", "/dashboard"), None);
        assert!(!Endpoint::Dashboard.reads_stats() && Endpoint::Stats.reads_stats());
    }

    #[test]
    fn answers_forbid_other_origins_and_inline_script() {
        let r = page_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let csp = r.header("content-security-policy").unwrap_or("");
        assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
        assert!(!csp.contains("unsafe"));
        assert!(!PAGE.contains("<script>"), "no inline script");
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        let js = asset_response(asset("/dashboard/assets/dashboard.js").unwrap());
        assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
        assert!(String::from_utf8_lossy(&js.body).contains(crate::endpoints::STATS_PATH));
    }
}
