//! The `settime` clock method on a host with a kernel of its own: a small
//! VM (QEMU, software emulation; Debian's cloud kernel, an initramfs with
//! this machine's sshd, built by `tests/vm/build-image`), reached only over
//! SSH through the harness's own control. The clock nemesis's `HostClocks`
//! moves the VM's clock, the reset puts it back, and a run killed with its
//! clock moved is put right by replaying the journal, as `harness clean
//! --hosts` does. This machine's clock is never touched: it is what the
//! VM's is measured against.
//!
//! Needs root (the control's state folder), `qemu-system-x86`,
//! `busybox-static`, `openssh-server` and apt's access to Debian's archive.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::control::clock::{measure, offset_ms};
use harness::control::{Control, Remote, SshRemote};
use harness::hosts::Hosts;
use harness::journal::{self, Journal, Undo};
use harness::nemesis::clock::{Clocks, HostClocks};

/// The VM, killed (by the PID of the child this test started) on drop.
struct Vm {
    qemu: Child,
    port: u16,
    key: PathBuf,
}

impl Vm {
    fn boot(dir: &Path) -> Vm {
        let key = dir.join("id");
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "settime-vm", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(ok.success(), "ssh-keygen failed");
        let image = dir.join("image");
        let built = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/build-image"))
            .arg(&image)
            .arg(dir.join("id.pub"))
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "building the VM failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        // A free loopback port for the VM's sshd.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let qemu = Command::new("qemu-system-x86_64")
            .args(["-m", "256", "-smp", "1", "-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(image.join("vmlinuz"))
            .arg("-initrd")
            .arg(image.join("initrd.gz"))
            .args(["-append", "console=ttyS0 panic=-1"])
            .arg("-netdev")
            .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"))
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("console.log")).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start qemu-system-x86_64: apt-get install -y qemu-system-x86");
        let vm = Vm { qemu, port, key };
        // Software emulation on a loaded machine boots slowly: be generous.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let up = TcpStream::connect(("127.0.0.1", port)).is_ok() && vm.ssh("true").is_some();
            if up {
                return vm;
            }
            assert!(
                Instant::now() < deadline,
                "the VM's sshd never answered; console:\n{}",
                std::fs::read_to_string(dir.join("console.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs `cmd` in the VM with plain `ssh`; its stdout if it succeeded.
    fn ssh(&self, cmd: &str) -> Option<String> {
        let out = Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "ConnectTimeout=5", "-i"])
            .arg(&self.key)
            .args(["-p", &self.port.to_string(), "root@127.0.0.1", cmd])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// How far the VM's wall clock is from this machine's, in ms, over a new
    /// SSH connection (its handshake biases this by up to half a second
    /// under emulation; [`control_offset_ms`] is closer).
    fn offset_ms(&self) -> f64 {
        let before = now_ns();
        let out = self
            .ssh(&measure().join(" "))
            .expect("cannot read the VM's clock");
        let after = now_ns();
        offset_ms(&out, (before + after) / 2).unwrap_or_else(|| panic!("not a clock: {out:?}"))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// How far the VM's clock is from this machine's, read through the
/// control's multiplexed connection (no SSH handshake inside the window,
/// so the midpoint is close to when `date` ran).
async fn control_offset_ms(control: &Control) -> f64 {
    let before = now_ns();
    let out = control.exec("n1", &measure()).await.unwrap();
    let after = now_ns();
    let ms = offset_ms(&out.stdout, (before + after) / 2).unwrap();
    eprintln!("  (window {:.0} ms)", (after - before) as f64 / 1e6);
    ms
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// Within `tolerance` ms of `want`. The tolerance covers SSH latency under
/// emulation on a loaded machine, not the offsets, which are tens of seconds.
fn assert_near(got: f64, want: f64, what: &str) {
    let tolerance = 2000.0;
    eprintln!("{what}: {got:.0} ms (want {want:.0})");
    assert!(
        (got - want).abs() < tolerance,
        "{what}: the VM's clock is {got:.0} ms off, expected {want:.0} ms"
    );
}

/// Clock-reset steps ever journaled (done or not).
fn clock_reset_steps(journal: &Journal) -> usize {
    journal::entries(journal.path())
        .unwrap()
        .iter()
        .filter(|u| matches!(u, Undo::RemoteResetClock { .. }))
        .count()
}

#[test]
fn settime_moves_and_resets_a_hosts_own_clock() {
    // SAFETY: no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let dir = tempfile::tempdir().unwrap();
    let vm = Vm::boot(dir.path());
    let base = vm.offset_ms();
    assert!(base.abs() < 5000.0, "the VM booted {base:.0} ms off");

    let hosts_file = dir.path().join("hosts.toml");
    let text = format!(
        "version = 1\nclock = \"settime\"\nknown_hosts = \"accept\"\nknown_hosts_file = \"known_hosts\"\n\n\
         [[host]]\nnode = \"n1\"\naddress = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nkey = \"id\"\n\
         zookeeper = true\ndedicated = true\nbase_dir = \"/var/lib/rapidstore-harness\"\n",
        vm.port
    );
    std::fs::write(&hosts_file, &text).unwrap();
    let hosts = Hosts::parse(&hosts_file, &text).unwrap();
    harness::control::clock::check_method(&hosts, hosts.clock).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run_id = format!("settime-vm-{}", std::process::id());
    let journal = Arc::new(
        Journal::create_in(
            &dir.path().join("state"),
            &dir.path().join("runs").join(&run_id),
            &run_id,
        )
        .unwrap(),
    );
    let clocks = Clocks::Settime(HostClocks::default());
    rt.block_on(async {
        let remote = SshRemote::connect(journal.clone(), &hosts).await.unwrap();
        let control = Control::Ssh(Arc::new(remote));
        let uname = control
            .exec("n1", &["uname".into(), "-r".into()])
            .await
            .unwrap();
        assert!(
            uname.stdout.contains("cloud-amd64"),
            "not the VM: {uname:?}"
        );

        // A skew forward, then backward: absolute from the harness's clock,
        // so the second does not add to the first. The reset step is
        // journaled once, before the clock first moves.
        clocks.set(&control, &journal, "n1", 30_000).await.unwrap();
        assert_near(control_offset_ms(&control).await, 30_000.0, "after +30 s");
        assert_eq!(clock_reset_steps(&journal), 1);
        clocks.set(&control, &journal, "n1", -20_000).await.unwrap();
        assert_near(control_offset_ms(&control).await, -20_000.0, "after -20 s");
        assert_eq!(clock_reset_steps(&journal), 1);
        clocks.set(&control, &journal, "n1", 0).await.unwrap();
        assert_near(control_offset_ms(&control).await, 0.0, "after the reset");
        let Clocks::Settime(h) = &clocks else {
            unreachable!()
        };
        assert!(h.moved().is_empty());

        // A run that dies with the clock moved: a new step, not yet done.
        clocks.set(&control, &journal, "n1", 45_000).await.unwrap();
        assert_near(control_offset_ms(&control).await, 45_000.0, "after +45 s");
        assert_eq!(clock_reset_steps(&journal), 2);
    });
    // What `harness clean --hosts` does for a dead run: replay its journal.
    let report = journal.teardown();
    assert!(report.is_clean(), "{:?}", report.errors);
    // Only the dead run's reset is carried out: the first was resolved by
    // the nemesis's own reset.
    let resets = report
        .undone
        .iter()
        .filter(|s| s.starts_with("reset the clock of n1"))
        .count();
    assert_eq!(resets, 1, "{report:?}");
    assert_near(vm.offset_ms(), 0.0, "after replaying the journal");
}
