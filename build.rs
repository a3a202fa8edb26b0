//! Records the git revision and rustc version for `monogoto_exporter_build_info`.

use std::process::Command;

fn main() {
    let revision = std::env::var("MONOGOTO_EXPORTER_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| run("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = run(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=MONOGOTO_EXPORTER_REVISION={revision}");
    println!("cargo:rustc-env=MONOGOTO_EXPORTER_RUSTC={rustc_version}");
    println!("cargo:rerun-if-env-changed=MONOGOTO_EXPORTER_REVISION");
    // Rebuild when HEAD moves, so the revision stays true. Git names the
    // files: in a worktree `.git` is a file and HEAD lives elsewhere.
    for name in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(path) = run("git", &["rev-parse", "--git-path", name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}
