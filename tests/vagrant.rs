//! The `Vagrantfile` is valid for Vagrant itself (Debian's `vagrant`
//! package; `--ignore-provider`, so no box or hypervisor is needed), and a
//! broken one is refused: the check can fail.

use std::path::Path;
use std::process::Command;

fn validate(dir: &Path) -> std::process::Output {
    let scratch = tempfile::tempdir().unwrap();
    Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .env("VAGRANT_CWD", dir)
        // Keep Vagrant's state out of the checkout and the home folder.
        .env("VAGRANT_HOME", scratch.path().join("home"))
        .env("VAGRANT_DOTFILE_PATH", scratch.path().join("dot"))
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run vagrant ({e}); install it: apt-get install -y vagrant")
        })
}

#[test]
fn vagrantfile_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = validate(root);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("validated successfully"),
        "vagrant validate failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same check refuses a Vagrantfile with a mistake in it.
    let broken = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(root.join("Vagrantfile")).unwrap();
    std::fs::write(
        broken.path().join("Vagrantfile"),
        good.replace("node.vm.hostname = name", "node.vm.hostnme = name"),
    )
    .unwrap();
    let out = validate(broken.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hostnme"));
}
