//! The cross-built `botward.exe`, run under Wine and driven from Linux.
//!
//! scripts/windows.sh makes a fresh Wine prefix, cross-builds botward.exe
//! and runs the tests that use this module with three variables set:
//! `BOTWARD_WIN_EXE` (the exe), `BOTWARD_WINEPREFIX` (the prefix, with the
//! bcryptprimitives.dll shim Rust executables need in its system32) and
//! `BOTWARD_WINE` (the 64-bit Wine loader). Without them a test skips
//! itself with a note, or fails under CI (`CI=true`). These tests only run
//! under Wine, so they are `#[ignore]`d for the Linux run and
//! scripts/windows.sh runs them with `--include-ignored`.
//!
//! A test in outline:
//!
//! ```ignore
//! #[test]
//! #[ignore = "drives botward.exe under Wine: scripts/windows.sh runs it"]
//! fn serves_under_wine() {
//!     let Some(wine) = Wine::find("serves_under_wine") else { return };
//!     let dir = wine.scratch("serves");            // a fresh Linux folder
//!     let config = dir.join("botward.toml");
//!     // Paths inside a config are the Windows paths botward.exe sees:
//!     // `wine.windows_path(&p)` (Z:\...), or files under `wine.drive_c()`
//!     // named C:\..., written as TOML literal strings ('C:\...').
//!     std::fs::write(&config, "...").unwrap();
//!     let mut bw = wine.spawn(&dir, ["serve", "--config", &wine.windows_path(&config)]);
//!     let ready = bw.wait_for_line(Duration::from_secs(60), |l| l.starts_with("botward ready"));
//!     // ... talk to it over TCP or its named pipe ...
//!     assert_eq!(bw.stop(Duration::from_secs(30)), Some(0)); // Ctrl+C, then wait
//! }
//! ```
//!
//! [`Wine::run`] runs a command to its end and returns its exit code and
//! output. Output always goes to files in the test's folder, never to a
//! pipe: Wine's long-lived processes (its server, services) inherit the
//! output of the command that starts them, and a pipe would stay open.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{required, unique};

/// botward.exe, the prefix it runs in and the Wine that runs it.
#[derive(Clone, Debug)]
pub struct Wine {
    pub exe: PathBuf,
    pub prefix: PathBuf,
    pub wine: PathBuf,
}

/// A command that ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Wine {
    /// Reads `BOTWARD_WIN_EXE`, `BOTWARD_WINEPREFIX` and `BOTWARD_WINE`
    /// (default: Debian's /usr/lib/wine/wine64, else `wine64`), or decides
    /// to skip (outside CI) or fail (under CI) when the first two are unset.
    pub fn find(test: &str) -> Option<Wine> {
        let exe = std::env::var_os("BOTWARD_WIN_EXE").map(PathBuf::from);
        let prefix = std::env::var_os("BOTWARD_WINEPREFIX").map(PathBuf::from);
        let (Some(exe), Some(prefix)) = (exe, prefix) else {
            if required() {
                panic!("{test}: BOTWARD_WIN_EXE and BOTWARD_WINEPREFIX are required under CI; run scripts/windows.sh");
            }
            eprintln!("SKIP {test}: BOTWARD_WIN_EXE or BOTWARD_WINEPREFIX unset (scripts/windows.sh sets them)");
            return None;
        };
        assert!(
            exe.is_file(),
            "{test}: BOTWARD_WIN_EXE={} is no file",
            exe.display()
        );
        let shim = prefix.join("drive_c/windows/system32/bcryptprimitives.dll");
        assert!(
            shim.is_file(),
            "{test}: {} missing: make the prefix with scripts/windows.sh",
            shim.display()
        );
        let wine = std::env::var_os("BOTWARD_WINE")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/usr/lib/wine/wine64")).filter(|p| p.exists()))
            .unwrap_or_else(|| PathBuf::from("wine64"));
        Some(Wine { exe, prefix, wine })
    }

    /// A fresh Linux folder for one test's files and logs.
    pub fn scratch(&self, test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "botward-wine-{test}-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The prefix's C: drive, as a Linux folder: `C:\ProgramData` is
    /// `drive_c().join("ProgramData")`.
    pub fn drive_c(&self) -> PathBuf {
        self.prefix.join("drive_c")
    }

    /// `wine64 PROGRAM ARGS` in the prefix, with no input; the caller
    /// chooses where the output goes (files: see the module doc).
    pub fn wine_command<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.wine);
        cmd.arg(program)
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .stdin(Stdio::null());
        cmd
    }

    /// `wine64 botward.exe ARGS`; see [`Wine::wine_command`].
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wine_command(&self.exe, args)
    }

    /// Starts `botward.exe ARGS` with its output in files in `dir`.
    pub fn spawn<I, S>(&self, dir: &Path, args: I) -> WineProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        WineProcess::spawn(self.command(args), dir, "botward")
    }

    /// Runs `botward.exe ARGS` to its end (failing the test if that takes
    /// longer than `limit`) with its output in files in `dir`.
    pub fn run<I, S>(&self, dir: &Path, args: I, limit: Duration) -> Finished
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        WineProcess::spawn(self.command(args), dir, "botward").finish(limit)
    }

    /// The Windows path Wine gives a Linux path (`Z:\tmp\...` for a path
    /// outside the prefix), as `winepath -w` tells it.
    pub fn windows_path(&self, path: &Path) -> String {
        self.winepath("-w", path.as_os_str())
    }

    /// The Linux path of a Windows path (`winepath -u`).
    pub fn unix_path(&self, path: &str) -> PathBuf {
        PathBuf::from(self.winepath("-u", OsStr::new(path)))
    }

    fn winepath(&self, flag: &str, path: &OsStr) -> String {
        let dir = std::env::temp_dir().join(format!(
            "botward-winepath-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cmd = self.wine_command("winepath.exe", [OsStr::new(flag), path]);
        let done = WineProcess::spawn(cmd, &dir, "winepath").finish(Duration::from_secs(60));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(done.code, Some(0), "winepath {flag} {path:?}: {done:?}");
        let line = done.stdout.lines().next().unwrap_or_default().trim_end();
        assert!(
            !line.is_empty(),
            "winepath {flag} {path:?} said nothing: {done:?}"
        );
        line.to_owned()
    }
}

/// A process started under Wine, its output in two files. Dropping it
/// kills the process.
pub struct WineProcess {
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    code: Option<Option<i32>>,
}

impl WineProcess {
    /// Starts `cmd` with stdout and stderr in `<dir>/<name>-<n>.out` and
    /// `.err`.
    pub fn spawn(mut cmd: Command, dir: &Path, name: &str) -> WineProcess {
        let n = unique();
        let stdout = dir.join(format!("{name}-{n}.out"));
        let stderr = dir.join(format!("{name}-{n}.err"));
        cmd.stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        WineProcess {
            child,
            stdout,
            stderr,
            code: None,
        }
    }

    /// The Linux pid of the process (Wine runs each Windows process as one
    /// Linux process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The exit code once the process has ended (`Some(None)`: ended by a
    /// signal), without waiting.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        if self.code.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.code = Some(status.code());
            }
        }
        self.code
    }

    /// Waits up to `limit` for the process to end and returns its exit
    /// code; `None` if it is still running (or ended by a signal).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(code) = self.exited() {
                return code;
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `limit` for a line of stdout that satisfies `pred`, and
    /// returns it; fails the test, with both outputs, if the process ends
    /// or the limit passes first.
    pub fn wait_for_line(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            // Read before checking for the end, so a last line is seen.
            let ended = self.exited();
            if let Some(line) = self.stdout_text().lines().find(|l| pred(l)) {
                return line.to_owned();
            }
            if let Some(code) = ended {
                panic!("{} ended ({code:?}) before the line came", self.describe());
            }
            if start.elapsed() > limit {
                self.kill();
                panic!("no such line within {limit:?} from {}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the process to stop as Ctrl+C would (Wine delivers SIGINT to a
    /// console process as CTRL_C_EVENT), waits up to `limit`, and returns
    /// its exit code; kills it and returns `None` if it has not ended by
    /// then.
    pub fn stop(&mut self, limit: Duration) -> Option<i32> {
        if self.exited().is_none() {
            // SAFETY: kill(2) on the pid of our own unreaped child.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGINT);
            }
        }
        let code = self.wait(limit);
        if self.exited().is_none() {
            self.kill();
        }
        code
    }

    /// Kills the process at once and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.code = Some(status.code());
        }
    }

    /// Waits up to `limit` for the end and returns the result; kills the
    /// process and fails the test when it runs longer.
    pub fn finish(mut self, limit: Duration) -> Finished {
        if self.wait(limit).is_none() && self.exited().is_none() {
            self.kill();
            panic!("still running after {limit:?}: {}", self.describe());
        }
        Finished {
            code: self.exited().flatten(),
            stdout: self.stdout_text(),
            stderr: self.stderr_text(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "pid {}\n--- stdout\n{}--- stderr\n{}",
            self.child.id(),
            self.stdout_text(),
            self.stderr_text()
        )
    }
}

impl Drop for WineProcess {
    fn drop(&mut self) {
        if self.code.is_none() {
            self.kill();
        }
    }
}

/// A Linux path as Wine's drive Z:, which maps `/`, shows it: `/tmp/x` is
/// `Z:\tmp\x`. The same as [`Wine::windows_path`] for any path outside the
/// prefix, without starting a Wine process.
pub fn z_drive(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}
