//! Generated repositories for the benches: a bare repository whose `main` is written
//! through `git fast-import`, one commit after another, with fixed dates (the same input
//! gives the same commit ids).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// A `git fast-import` writing `main` of a new bare repository.
pub struct FastImport {
    child: Child,
    input: BufWriter<ChildStdin>,
    commits: usize,
}

impl FastImport {
    /// Creates the bare repository `repo` (branch `main`) and starts the import.
    pub fn bare(repo: &Path) -> Self {
        let git = |args: &[&str]| {
            let mut c = Command::new("git");
            c.args(args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null");
            c
        };
        let init = git(&["init", "-q", "--bare", "-b", "main"])
            .arg(repo)
            .status()
            .expect("git runs");
        assert!(init.success(), "git init failed");
        let mut child = git(&["--git-dir"])
            .arg(repo)
            .args(["fast-import", "--quiet"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("git fast-import runs");
        let input = BufWriter::with_capacity(1 << 20, child.stdin.take().unwrap());
        Self {
            child,
            input,
            commits: 0,
        }
    }

    /// Appends a commit to `main` (after the previous one) that writes each `(path, data)`.
    pub fn commit<I>(&mut self, message: &str, files: I)
    where
        I: IntoIterator<Item = (String, String)>,
    {
        self.commits += 1;
        let mark = self.commits;
        let w = &mut self.input;
        write!(
            w,
            "commit refs/heads/main\nmark :{mark}\n\
             author Bench <bench@example.invalid> {t} +0900\n\
             committer Bench <bench@example.invalid> {t} +0900\n\
             data {}\n{message}\n",
            message.len(),
            t = 1_700_000_000 + mark,
        )
        .unwrap();
        if mark > 1 {
            writeln!(w, "from :{}", mark - 1).unwrap();
        }
        for (path, data) in files {
            write!(w, "M 100644 inline {path}\ndata {}\n{data}\n", data.len()).unwrap();
        }
    }

    /// Ends the import; panics if git failed.
    pub fn finish(self) {
        let Self {
            mut child, input, ..
        } = self;
        input
            .into_inner()
            .map_err(|e| e.into_error())
            .expect("git fast-import reads its input");
        assert!(child.wait().unwrap().success(), "git fast-import failed");
    }
}
