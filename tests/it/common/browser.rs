//! Opens an HTML file in headless Chromium and reports what happened: the DOM
//! after loading (so after any script that ran), every console message, and
//! every network request the page made.
//!
//! How problems are detected:
//! - Console: Chromium runs with `--enable-logging=stderr`, which prints each
//!   console message of the page as a `...:CONSOLE...] "message", source: ...`
//!   line: uncaught JavaScript errors, `console.*` calls, and Content Security
//!   Policy violations ("Executing inline script violates the following
//!   Content Security Policy directive ..."). A report page has no script, so
//!   any console message is a problem.
//! - Fetches: Chromium writes a network log (`--log-net-log`); every
//!   `URL_REQUEST_START_JOB` event whose initiator is an origin (the page's
//!   `file://` origin shows as `null`) is a request the page made. The
//!   browser's own background requests have no origin and are ignored.
//! - Script execution: the caller inspects [`Rendered::dom`], the DOM as
//!   serialised after load (`--dump-dom`): a payload that ran leaves a trace
//!   there (a changed `<title>`, an added element).
//!
//! Chromium must be installed (`/usr/bin/chromium`, Debian's `chromium`
//! package; `.ci/run` installs it) or named by `GIGO_CHROMIUM`. Without it the
//! calling test fails and says how to install it: it never passes silently.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What Chromium made of a page.
#[derive(Debug)]
pub struct Rendered {
    /// The DOM serialised after loading.
    pub dom: String,
    /// Every console message (errors, CSP violations, `console.*` output).
    pub console: Vec<String>,
    /// URLs of the network requests the page made.
    pub fetched: Vec<String>,
    /// Chromium's whole standard error, for failure messages.
    pub stderr: String,
}

/// One Chromium at a time: the machines running the tests may have two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const INSTALL: &str = "headless Chromium is needed by this test and was not found. Install it \
    with `sudo apt-get update && sudo apt-get install -y chromium` (Debian/Ubuntu; `.ci/run` \
    does this), or set GIGO_CHROMIUM to a Chromium or Chrome binary.";

/// The Chromium binary: `$GIGO_CHROMIUM`, else `/usr/bin/chromium`, else
/// `chromium`, `chromium-browser` or `google-chrome` on `PATH`. Panics with
/// install instructions when there is none.
pub fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("GIGO_CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "GIGO_CHROMIUM={} is not a file. {INSTALL}",
            p.display()
        );
        return p;
    }
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return fixed;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{INSTALL}");
}

/// Loads `html` (a file) in headless Chromium, with no network access of its
/// own beyond what the page asks for, and returns what happened. Panics if
/// Chromium is missing, fails, or takes over two minutes.
pub fn render(html: &Path) -> Rendered {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bin = chromium();
    let html = html.canonicalize().expect("the HTML file exists");
    let profile = tempfile::tempdir().expect("a temporary profile directory");
    let net_log = profile.path().join("netlog.json");
    let mut child = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--no-pings",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--log-net-log={}", net_log.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}. {INSTALL}", bin.display()));
    // Read both pipes while the browser runs, so that neither fills up.
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish loading {} within 120 s",
                html.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    assert!(
        status.success() && dom.contains("<html"),
        "chromium failed on {} ({status}); stderr:\n{stderr}",
        html.display()
    );
    Rendered {
        console: console_messages(&stderr),
        fetched: page_requests(&net_log),
        dom,
        stderr,
    }
}

/// The console lines in Chromium's log: `[...:INFO:CONSOLE:12] "msg", source:
/// file:///... (12)` (older versions: `CONSOLE(12)]`).
fn console_messages(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE:") || l.contains(":CONSOLE("))
        .map(|l| match l.find("] ") {
            Some(i) => l[i + 2..].to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// URLs of the requests the page (not the browser) started, from the net log.
fn page_requests(net_log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(net_log)
        .unwrap_or_else(|e| panic!("chromium wrote no net log at {}: {e}", net_log.display()));
    let log: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("chromium's net log is not JSON ({e})"));
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_i64();
    assert!(
        start_job.is_some(),
        "chromium's net log has no URL_REQUEST_START_JOB event type"
    );
    let mut urls = Vec::new();
    for e in log["events"].as_array().into_iter().flatten() {
        if e["type"].as_i64() != start_job {
            continue;
        }
        let p = &e["params"];
        let by_browser = p["initiator"].as_str() == Some("not an origin");
        if let (Some(url), false) = (p["url"].as_str(), by_browser) {
            urls.push(url.to_string());
        }
    }
    urls.sort();
    urls.dedup();
    urls
}
