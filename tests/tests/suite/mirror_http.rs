//! The mirror against the CodeCommit git stand-in ([`GitServer`]) over 127.0.0.1: both the
//! source and the standby are CodeCommit locations on the server, reached with signed
//! passwords through `tozai::remote::codecommit` (the library) or the endpoint override and
//! the AWS environment (the CLI). Every case checks the standby afterwards with the real git
//! CLI: `git fsck --strict`, and `git for-each-ref refs/heads refs/tags` equal to the
//! source's for the mirrored refs. What the mirror decides per ref over local paths is in
//! `mirror_local.rs`; here it is what HTTP adds: auth, the advertisement the plan reads, a
//! server that refuses or dies, large and odd payloads, and the binary end to end.
//!
//! Needs `lighttpd` and awscli in the tests' virtualenv (see `tozai_tests::server`), and the
//! built binary (`cargo build -p tozai-cli`): a missing one fails, never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::git_auth::Credentials;
use tozai::location::Location;
use tozai::mirror::{MirrorOutcome, RefSelection, RefStatus};
use tozai::ports::{
    GitCredentials, GitLogin, GitRemote, Mirror, MirrorError, MirrorRequest, TransferProgress,
};
use tozai_tests::mirror::{file_ledger, git, json_status, refs, refs_named, rev, status};
use tozai_tests::server::{AwsCli, GitServer, Request};
use tozai_tests::{GitRepo, Run, Sandbox, tozai_command};

/// The region of every CodeCommit location here (the server accepts it).
const REGION: &str = "us-east-1";
/// The size of the large incompressible file.
const BIG: usize = 50 * 1024 * 1024;

fn key() -> Credentials {
    Credentials {
        access_key_id: "AKIDMIRRORTEST".into(),
        secret_access_key: "mirror/test+SECRET=key".into(),
        session_token: None,
    }
}

fn temporary_key() -> Credentials {
    Credentials {
        access_key_id: "ASIAMIRRORTEST".into(),
        secret_access_key: "temporary/mirror+SECRET".into(),
        session_token: Some("IQoJb3JpZ2luX2VjMIRROR/TOKEN+with=specials".into()),
    }
}

/// `key()` with a secret the server does not know.
fn wrong_key() -> Credentials {
    let mut k = key();
    k.secret_access_key = "not/the+right=secret".into();
    k
}

fn location(name: &str) -> Location {
    Location::CodeCommit {
        region: REGION.into(),
        name: name.into(),
    }
}

/// Deterministic incompressible bytes from a seeded xorshift64*.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An error and its sources, for failure messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

fn is_receive_pack_post(r: &Request) -> bool {
    r.method == "POST" && r.path.ends_with("/git-receive-pack")
}

/// One server holding the source `src` and the standby `dst`, and a work tree whose refs
/// [`publish`](World::publish) pushes (with the git CLI, over the file system) into `src`.
struct World {
    server: GitServer,
    work: GitRepo,
    src: PathBuf,
    dst: PathBuf,
    scratch: TempDir,
    _repos: TempDir,
}

impl World {
    fn new() -> Self {
        let repos = TempDir::new().unwrap();
        let server = GitServer::start(repos.path(), &[key(), temporary_key()]);
        let src = server.create_repo("src");
        let dst = server.create_repo("dst");
        Self {
            server,
            work: GitRepo::new(),
            src,
            dst,
            scratch: TempDir::new().unwrap(),
            _repos: repos,
        }
    }

    fn cache(&self) -> PathBuf {
        self.scratch.path().join("cache")
    }

    /// Writes `path` in the work tree and commits it; returns the commit id.
    fn commit(&self, path: impl AsRef<[u8]>, contents: impl AsRef<[u8]>) -> String {
        self.work.write(path, contents);
        self.work.commit("change")
    }

    /// Commits `big.bin`: [`BIG`] incompressible bytes from the PRNG seeded with `seed`.
    /// The work tree and the source store objects uncompressed, so that the git CLI does not
    /// spend seconds deflating noise while setting up; what the mirror sends is unchanged.
    fn commit_big(&self, seed: u64) -> String {
        self.work.git(&["config", "core.compression", "0"]);
        git(&self.src, &["config", "core.compression", "0"]);
        self.commit("big.bin", noise(BIG, seed))
    }

    /// Makes the source's refs exactly the work tree's (creations, moves, force-pushes,
    /// deletions).
    fn publish(&self) {
        self.work
            .git(&["push", "-q", "--mirror", self.src.to_str().unwrap()]);
    }

    fn remote(&self, name: &str, credentials: Credentials) -> GitRemote {
        tozai::remote::codecommit(
            &location(name),
            credentials,
            Some(&self.server.url_prefix()),
        )
        .unwrap()
    }

    fn request(&self, force: bool, dry_run: bool) -> MirrorRequest {
        MirrorRequest {
            source: self.remote("src", key()),
            target: self.remote("dst", key()),
            selection: RefSelection::all(),
            force,
            dry_run,
            ledger: Some(file_ledger(&self.scratch.path().join("state"), "dst")),
        }
    }

    fn try_mirror_with(&self, request: &MirrorRequest) -> Result<MirrorOutcome, MirrorError> {
        Git2Mirror::new(self.cache()).mirror(request, None)
    }

    fn mirror_with(&self, request: &MirrorRequest) -> MirrorOutcome {
        self.try_mirror_with(request)
            .unwrap_or_else(|e| panic!("mirror failed: {}\n{}", chain(&e), self.server.log()))
    }

    fn mirror(&self) -> MirrorOutcome {
        self.mirror_with(&self.request(false, false))
    }

    /// Installs an `update` hook in the standby that refuses ref `name`, saying `message`.
    fn refuse_on_the_standby(&self, name: &str, message: &str) {
        use std::os::unix::fs::PermissionsExt;
        let hook = self.dst.join("hooks/update");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\nif [ \"$1\" = {name} ]; then\n  echo '{message}' >&2\n  exit 1\nfi\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The number of receive-pack POSTs the server has answered so far.
    fn pushes(&self) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| is_receive_pack_post(r))
            .count()
    }

    fn fsck_standby(&self) {
        git(&self.dst, &["fsck", "--strict", "--no-progress"]);
    }

    /// The standby is sound and has exactly the source's branches and tags.
    fn assert_in_step(&self) {
        tozai_tests::mirror::assert_in_step(&self.src, &self.dst);
    }

    /// The standby is sound and has the source's value for each of `names`.
    fn assert_in_step_for(&self, names: &[&str]) {
        self.fsck_standby();
        assert_eq!(
            refs_named(&self.dst, names),
            refs_named(&self.src, names),
            "standby vs source for {names:?}"
        );
    }

    /// `tozai ARGS` in the scratch directory, with AWS reaching this server as `credentials`
    /// and nothing else from the caller's AWS environment.
    fn tozai(&self, credentials: &Credentials, args: &[&str]) -> Run {
        let home = self.scratch.path().join("home");
        let sandbox = Sandbox::new(&home);
        for file in ["aws-config", "aws-credentials"] {
            std::fs::write(home.join(file), "").unwrap();
        }
        let mut cmd = tozai_command(self.scratch.path(), &sandbox, args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("TOZAI_CODECOMMIT_ENDPOINT", self.server.url_prefix())
            .env("AWS_CONFIG_FILE", home.join("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", &credentials.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &credentials.secret_access_key);
        if let Some(token) = &credentials.session_token {
            cmd.env("AWS_SESSION_TOKEN", token);
        }
        Run::of(cmd, format!("tozai {args:?}"))
    }

    /// `git ls-remote --heads --tags` of repository `name`, as a CodeCommit user runs it:
    /// awscli's credential helper signs the password (no code shared with tozai's signer).
    fn ls_remote_with_awscli(&self, name: &str, credentials: &Credentials) -> String {
        let aws = AwsCli::find();
        let helper = format!(
            "!f() {{ test \"$1\" = get || return 0; '{}' --region {REGION} codecommit \
             credential-helper get --ignore-host-check; }}; f",
            aws.path().display()
        );
        let out = Command::new("git")
            .current_dir(self.scratch.path())
            .args(["-c", "credential.helper="])
            .args(["-c", &format!("credential.helper={helper}")])
            .args(["-c", "credential.useHttpPath=true"])
            .args([
                "ls-remote",
                "--heads",
                "--tags",
                &self.server.repo_url(name),
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSL_CAINFO", tozai_tests::tls::ca_file())
            .envs(aws.env(credentials, REGION))
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git ls-remote {name} with awscli's helper failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.server.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tozai mirror --from codecommit::REGION://src --to codecommit::REGION://dst --cache
    /// DIR EXTRA...`.
    fn tozai_mirror(&self, credentials: &Credentials, extra: &[&str]) -> Run {
        let from = location("src").to_string();
        let to = location("dst").to_string();
        let cache = self.cache();
        let mut args = vec![
            "mirror",
            "--from",
            &from,
            "--to",
            &to,
            "--cache",
            cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.tozai(credentials, &args)
    }
}

/// Asserts that nothing secret reaches the output: not the secret key, not the session
/// token, not a signed password (a 64-hex-digit signature), not an Authorization header.
fn assert_no_secrets(run: &Run, credentials: &Credentials) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let mut secrets = vec![credentials.secret_access_key.as_str()];
        secrets.extend(credentials.session_token.as_deref());
        for secret in secrets {
            assert!(!text.contains(secret), "{stream} shows a secret:\n{text}");
        }
        assert!(
            !text.to_ascii_lowercase().contains("authorization"),
            "{stream} shows a header:\n{text}"
        );
        let mut run_len = 0;
        for c in text.chars() {
            run_len = if c.is_ascii_hexdigit() {
                run_len + 1
            } else {
                0
            };
            assert!(run_len < 64, "{stream} shows a signature:\n{text}");
        }
    }
}

// ---- 1. first, incremental, nothing new ----

#[test]
fn first_mirror_then_incremental_then_nothing_new_pushes_nothing() {
    let w = World::new();
    for i in 0..12 {
        w.commit(format!("common/f{i}.yaml"), format!("n: {i}\n"));
    }
    w.publish();
    let first = w.mirror();
    assert!(
        matches!(status(&first, "refs/heads/main"), RefStatus::Created { new } if new.as_str() == rev(&w.src, "main")),
        "{first:#?}"
    );
    assert!(first.in_sync());
    w.assert_in_step();

    let c = w.commit("secondary/b.yaml", "b: 1\n");
    w.publish();
    let second = w.mirror();
    assert!(
        matches!(status(&second, "refs/heads/main"), RefStatus::Updated { new, forced: false, .. } if new.as_str() == c),
        "{second:#?}"
    );
    assert!(second.objects_sent > 0, "{second:#?}");
    assert!(
        second.objects_sent * 5 < first.objects_sent,
        "an incremental run sends only the new objects: {} then {}",
        first.objects_sent,
        second.objects_sent
    );
    w.assert_in_step();

    let pushes = w.pushes();
    let third = w.mirror();
    assert!(
        third
            .refs
            .iter()
            .all(|r| matches!(r.status, RefStatus::Unchanged { .. })),
        "{third:#?}"
    );
    assert!(third.in_sync());
    assert_eq!(third.objects_sent, 0);
    assert_eq!(
        w.pushes(),
        pushes,
        "nothing new: no receive-pack POST\n{:?}",
        w.server.requests()
    );
    w.assert_in_step();
}

// ---- 2. branches and tags ----

#[test]
fn new_and_deleted_branches_and_both_kinds_of_tags() {
    let w = World::new();
    w.commit("a", "a");
    w.work.git(&["branch", "feature/x"]);
    w.work.git(&["tag", "v1"]);
    w.work.git(&["tag", "-a", "v2", "-m", "release 2"]);
    w.publish();
    let o = w.mirror();
    for name in [
        "refs/heads/main",
        "refs/heads/feature/x",
        "refs/tags/v1",
        "refs/tags/v2",
    ] {
        assert!(
            matches!(status(&o, name), RefStatus::Created { .. }),
            "{name}: {o:#?}"
        );
    }
    w.assert_in_step();
    assert_eq!(
        git(&w.dst, &["cat-file", "-t", "refs/tags/v2"]).trim(),
        "tag"
    );
    assert_eq!(
        git(&w.dst, &["cat-file", "-t", "refs/tags/v1"]).trim(),
        "commit"
    );

    w.work.git(&["branch", "-D", "feature/x"]);
    w.work.git(&["tag", "-d", "v1"]);
    w.work.git(&["branch", "feature/y"]);
    w.commit("b", "b");
    w.publish();
    let o = w.mirror();
    assert!(matches!(
        status(&o, "refs/heads/feature/x"),
        RefStatus::Deleted { .. }
    ));
    assert!(matches!(
        status(&o, "refs/tags/v1"),
        RefStatus::Deleted { .. }
    ));
    assert!(matches!(
        status(&o, "refs/heads/feature/y"),
        RefStatus::Created { .. }
    ));
    assert!(matches!(
        status(&o, "refs/heads/main"),
        RefStatus::Updated { forced: false, .. }
    ));
    assert!(matches!(
        status(&o, "refs/tags/v2"),
        RefStatus::Unchanged { .. }
    ));
    assert!(o.in_sync());
    w.assert_in_step();
    assert_eq!(
        git(&w.dst, &["cat-file", "-t", "refs/tags/v2"]).trim(),
        "tag"
    );
}

// ---- 3. a force-pushed source ----

#[test]
fn a_force_pushed_source_is_diverged_and_left_alone_unless_forced() {
    let w = World::new();
    w.commit("a", "a");
    let before = w.commit("b", "b");
    w.publish();
    w.mirror();
    w.work.git(&["reset", "-q", "--hard", "HEAD~1"]);
    let rewritten = w.commit("c", "c");
    w.work.git(&["tag", "v1"]);
    w.publish();

    let o = w.mirror();
    assert!(!o.in_sync(), "{o:#?}");
    match status(&o, "refs/heads/main") {
        RefStatus::Diverged {
            source, standby, ..
        } => {
            assert_eq!(
                source.as_ref().map(|s| s.as_str()),
                Some(rewritten.as_str())
            );
            assert_eq!(standby.as_str(), before);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(status(&o, "refs/tags/v1"), RefStatus::Created { .. }),
        "others sync"
    );
    assert_eq!(rev(&w.dst, "refs/heads/main"), before, "not rewound");
    w.assert_in_step_for(&["refs/tags/v1"]);

    // The CLI says so with exit 1.
    let run = w.tozai_mirror(&key(), &["--json"]);
    run.expect_code(1).expect_no_panic();
    assert_eq!(json_status(&run.json(), "refs/heads/main"), "diverged");
    assert_eq!(rev(&w.dst, "refs/heads/main"), before, "not rewound");

    let o = w.mirror_with(&w.request(true, false));
    assert!(
        matches!(status(&o, "refs/heads/main"), RefStatus::Updated { forced: true, new, .. } if new.as_str() == rewritten),
        "{o:#?}"
    );
    assert!(o.in_sync());
    w.assert_in_step();
}

// ---- 4. a standby ref moved between read and push ----

/// A commit made on the standby with `parent`, which the source does not have (no ref
/// points at it yet).
fn made_on_the_standby(w: &World, parent: &str) -> String {
    let tree = rev(&w.dst, "main^{tree}");
    git(
        &w.dst,
        &[
            "commit-tree",
            &tree,
            "-p",
            parent,
            "-m",
            "made on the standby",
        ],
    )
    .trim()
    .to_owned()
}

#[test]
fn a_standby_ref_moved_between_read_and_push_is_refused_not_clobbered() {
    let w = World::new();
    let c1 = w.commit("a", "a");
    w.publish();
    w.mirror();
    let c2 = w.commit("b", "b");
    w.work.git(&["branch", "feature"]);
    w.work.git(&["tag", "v1"]);
    w.publish();

    // A commit made on the standby, which the source does not have; the hook moves the
    // standby's main to it once the mirror has read the refs it plans against.
    let theirs = made_on_the_standby(&w, &c1);
    let ran = w.server.after_next_push_advertisement(
        "dst",
        &format!("\"$TOZAI_GIT\" update-ref refs/heads/main {theirs} {c1}"),
    );
    let pushes = w.pushes();
    let advertised = |w: &World| {
        w.server
            .requests()
            .iter()
            .filter(|r| r.is(200, "GET", "/v1/repos/dst/info/refs"))
            .count()
    };
    let reads = advertised(&w);

    let o = w.mirror();
    assert!(ran.exists(), "the hook ran\n{}", w.server.log());
    assert_eq!(rev(&w.dst, "refs/heads/main"), theirs, "not clobbered");
    match status(&o, "refs/heads/main") {
        RefStatus::Diverged {
            source, standby, ..
        } => {
            assert_eq!(source.as_ref().map(|s| s.as_str()), Some(c2.as_str()));
            assert_eq!(standby.as_str(), theirs, "re-planned against the moved ref");
        }
        other => panic!("main should be diverged after the re-plan: {other:?}\n{o:#?}"),
    }
    assert!(!o.in_sync());
    for name in ["refs/heads/feature", "refs/tags/v1"] {
        assert!(
            matches!(status(&o, name), RefStatus::Created { .. }),
            "{name}: {o:#?}"
        );
    }
    w.assert_in_step_for(&["refs/heads/feature", "refs/tags/v1"]);
    // The first push was vetoed before anything was sent, then the refs were read again.
    assert_eq!(w.pushes() - pushes, 1, "{:?}", w.server.requests());
    assert!(
        advertised(&w) - reads >= 3,
        "read, vetoed push, read again, push: {:?}",
        w.server.requests()
    );
}

/// A run pushes in batches (4,000 refs, CodeCommit's limit; 2 here). When the standby moves
/// under a later batch, the re-plan finds the earlier batches' refs already in step: they
/// are still reported as what the run did (created), not `unchanged`, and what they sent
/// is counted.
#[test]
fn a_standby_ref_moved_under_a_later_batch_keeps_the_earlier_batches_results() {
    let w = World::new();
    let c1 = w.commit("a", "a");
    w.publish();
    w.mirror();
    let c2 = w.commit("b", "b");
    for b in ["a1", "a2"] {
        w.work.git(&["branch", b]);
    }
    w.work.git(&["tag", "v1"]);
    w.publish();

    let theirs = made_on_the_standby(&w, &c1);
    // Push advertisements: 1 the plan's listing, 2 the first batch (a1, a2), 3 the second
    // batch (main, v1). The hook re-arms itself once, so it runs at 2: the second batch
    // then finds main moved and nothing of it is sent.
    let ran = w.server.after_next_push_advertisement(
        "dst",
        &format!(
            "n=$(cat tozai-hook-runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > tozai-hook-runs\n\
             if [ $n -lt 2 ]; then cp \"$0\" tozai-after-advertise; \
             else \"$TOZAI_GIT\" update-ref refs/heads/main {theirs} {c1}; fi"
        ),
    );

    let o = Git2Mirror::new(w.cache())
        .with_refs_per_push(2)
        .mirror(&w.request(false, false), None)
        .unwrap_or_else(|e| panic!("mirror failed: {}\n{}", chain(&e), w.server.log()));
    assert!(ran.exists(), "the hook ran\n{}", w.server.log());
    assert_eq!(rev(&w.dst, "refs/heads/main"), theirs, "not clobbered");
    for name in ["refs/heads/a1", "refs/heads/a2", "refs/tags/v1"] {
        match status(&o, name) {
            RefStatus::Created { new } => assert_eq!(new.as_str(), c2, "{name}"),
            other => panic!("{name} should be reported created: {other:?}\n{o:#?}"),
        }
    }
    assert!(
        matches!(status(&o, "refs/heads/main"), RefStatus::Diverged { .. }),
        "{o:#?}"
    );
    // The first batch's pack carried c2's new objects (commit, tree, blob).
    assert!(o.objects_sent >= 3, "{o:#?}");
    w.assert_in_step_for(&["refs/heads/a1", "refs/heads/a2", "refs/tags/v1"]);
}

// ---- 5. a server hook rejecting one ref ----

#[test]
fn a_server_hook_rejecting_one_ref_leaves_the_others_synced() {
    let w = World::new();
    w.commit("a", "a");
    w.work.git(&["branch", "blocked"]);
    w.work.git(&["branch", "other"]);
    w.publish();
    w.refuse_on_the_standby("refs/heads/blocked", "blocked by policy");

    let o = w.mirror();
    match status(&o, "refs/heads/blocked") {
        RefStatus::Rejected { reason } => assert!(!reason.is_empty(), "{o:#?}"),
        other => panic!("{other:?}\n{o:#?}"),
    }
    assert!(!o.in_sync());
    for name in ["refs/heads/main", "refs/heads/other"] {
        assert!(
            matches!(status(&o, name), RefStatus::Created { .. }),
            "{name}: {o:#?}"
        );
    }
    w.assert_in_step_for(&["refs/heads/main", "refs/heads/other"]);
    assert!(refs_named(&w.dst, &["refs/heads/blocked"]).is_empty());

    let run = w.tozai_mirror(&key(), &["--json"]);
    run.expect_code(1).expect_no_panic();
    let v = run.json();
    assert_eq!(json_status(&v, "refs/heads/blocked"), "rejected", "{v:#}");
    assert_eq!(json_status(&v, "refs/heads/main"), "unchanged", "{v:#}");
    let run = w.tozai_mirror(&key(), &[]);
    run.expect_code(1).expect_no_panic();
    assert!(
        run.stdout.contains("REJECTED  refs/heads/blocked"),
        "{}",
        run.stdout
    );
    println!("a rejected ref: 1 rejected with the hook's reason, 2 others created, exit 1");
}

#[test]
fn a_rejected_ref_carries_the_server_hooks_message() {
    let w = World::new();
    w.commit("a", "a");
    w.work.git(&["branch", "blocked"]);
    w.publish();
    w.refuse_on_the_standby("refs/heads/blocked", "blocked by policy");
    let o = w.mirror();
    match status(&o, "refs/heads/blocked") {
        RefStatus::Rejected { reason } => {
            assert!(reason.contains("blocked by policy"), "{reason:?}")
        }
        other => panic!("{other:?}\n{o:#?}"),
    }
}

// ---- 6. a wrong secret ----

#[test]
fn a_wrong_secret_fails_authentication_quickly_naming_the_location() {
    let w = World::new();
    w.commit("a", "a");
    w.publish();
    let refused = |w: &World| {
        w.server
            .requests()
            .iter()
            .filter(|r| r.status == 401 || r.status == 403)
            .count()
    };

    for (wrong_side, name) in [("source", "src"), ("target", "dst")] {
        let mut request = w.request(false, false);
        if wrong_side == "source" {
            request.source = w.remote("src", wrong_key());
        } else {
            request.target = w.remote("dst", wrong_key());
        }
        let before = refused(&w);
        let started = Instant::now();
        let err = w
            .try_mirror_with(&request)
            .expect_err("a wrong secret fails");
        let took = started.elapsed();
        match &err {
            MirrorError::AuthenticationFailed { location: l, .. } => {
                assert_eq!(l, &location(name).to_string(), "{wrong_side}")
            }
            other => panic!("{wrong_side}: {}", chain(other)),
        }
        assert!(
            err.to_string().contains(&location(name).to_string()),
            "{err}"
        );
        assert!(!err.is_transient());
        let answers = refused(&w) - before;
        assert!(
            (1..=5).contains(&answers),
            "{wrong_side}: {answers} 401/403 answers\n{:?}",
            w.server.requests()
        );
        assert!(took < Duration::from_secs(10), "{wrong_side}: {took:?}");
    }
    assert!(refs(&w.dst).is_empty(), "nothing pushed");

    let mut wrong_temporary = temporary_key();
    wrong_temporary.secret_access_key.push('x');
    for creds in [wrong_key(), wrong_temporary] {
        for verbose in [&[][..], &["-vv"][..]] {
            let before = refused(&w);
            let run = w.tozai_mirror(&creds, verbose);
            run.expect_code(3).expect_no_panic();
            assert!(
                run.stderr
                    .contains("authentication failed for codecommit::"),
                "{}",
                run.stderr
            );
            assert_no_secrets(&run, &creds);
            let answers = refused(&w) - before;
            assert!((1..=5).contains(&answers), "{answers} 401/403 answers");
        }
    }
}

// ---- 7. the server killed mid-push ----

#[test]
fn a_server_killed_mid_push_then_a_rerun_converges() {
    let mut w = World::new();
    w.commit("README.md", "hello\n");
    w.commit_big(7);
    w.publish();

    let (tx, rx) = mpsc::channel::<u64>();
    let request = w.request(false, false);
    let cache = w.cache();
    let first = std::thread::scope(|s| {
        let mirror = s.spawn(move || {
            let signalled = AtomicBool::new(false);
            let on_progress = move |p: TransferProgress| {
                if let TransferProgress::Push { bytes, .. } = p
                    && bytes > 4 * 1024 * 1024
                    && !signalled.swap(true, Ordering::SeqCst)
                {
                    let _ = tx.send(bytes);
                }
            };
            Git2Mirror::new(cache).mirror(&request, Some(&on_progress))
        });
        let sent = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the push never got going\n{}", w.server.log()));
        let posts_before = w
            .server
            .requests()
            .iter()
            .filter(|r| is_receive_pack_post(r))
            .count();
        w.server.kill();
        assert_eq!(
            posts_before, 0,
            "the push was still in flight at {sent} bytes"
        );
        assert!(refs(&w.dst).is_empty(), "nothing landed before the kill");
        std::thread::sleep(Duration::from_millis(200));
        w.server.restart();
        mirror.join().expect("the mirror thread does not panic")
    });
    match &first {
        Ok(o) => {
            assert!(o.in_sync(), "succeeded through its retries: {o:#?}");
            // The list, the push that was cut, and at least one retry each read the refs.
            let reads = w
                .server
                .requests()
                .iter()
                .filter(|r| r.is(200, "GET", "/v1/repos/dst/info/refs"))
                .count();
            assert!(reads >= 3, "{:?}", w.server.requests());
        }
        Err(e) => assert!(e.is_transient(), "{}", chain(e)),
    }

    let o = w.mirror();
    assert!(o.in_sync(), "{o:#?}");
    w.assert_in_step();
    assert_eq!(
        rev(&w.dst, "main:big.bin"),
        rev(&w.src, "main:big.bin"),
        "the big file arrived intact"
    );
    println!(
        "the git server killed mid-push: the rerun converged, {} objects sent, the standby equal to the source",
        o.objects_sent
    );
}

// ---- 8. odd names and a big file ----

#[test]
fn unicode_and_non_utf8_names_and_a_50_mb_file_arrive_intact() {
    let w = World::new();
    w.commit("共通/テンプレート/東京.yaml", "a: 1\n");
    w.commit("common/with space and \"quotes\".yaml", "b: 1\n");
    w.commit(b"latin-1/caf\xe9.yaml", "c: 1\n");
    w.commit_big(8);
    let big_blob = w.work.git(&["rev-parse", "HEAD:big.bin"]).trim().to_owned();
    w.work.git(&["branch", "ブランチ/東京"]);
    w.publish();
    let o = w.mirror();
    assert!(o.in_sync(), "{o:#?}");
    w.assert_in_step();
    // Same refs mean same trees; spelled out for the names and the big blob anyway.
    let tree = |dir: &Path| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["ls-tree", "-r", "-z", "main"])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(out.status.success(), "git ls-tree in {}", dir.display());
        out.stdout
    };
    let listing = tree(&w.dst);
    assert_eq!(listing, tree(&w.src));
    for name in [
        "共通/テンプレート/東京.yaml".as_bytes(),
        b"common/with space and \"quotes\".yaml",
        b"latin-1/caf\xe9.yaml",
        format!("{big_blob}\tbig.bin").as_bytes(),
    ] {
        assert!(
            listing.windows(name.len()).any(|w| w == name),
            "{} not in the standby's tree:\n{}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(&listing)
        );
    }
    assert_eq!(
        git(&w.dst, &["cat-file", "-s", &big_blob]).trim(),
        BIG.to_string()
    );
}

// ---- 9. the CLI end to end ----

#[test]
fn the_cli_mirrors_codecommit_locations_with_aws_credentials() {
    let w = World::new();
    w.commit("a", "a");
    w.work.git(&["tag", "-a", "v1", "-m", "one"]);
    w.publish();
    let run = w.tozai_mirror(&key(), &["--json"]);
    run.expect_code(0).expect_no_panic();
    let v = run.json();
    assert_eq!(v["source"], "codecommit::us-east-1://src", "{v:#}");
    assert_eq!(v["target"], "codecommit::us-east-1://dst", "{v:#}");
    assert_eq!(v["dry_run"], false);
    assert_eq!(json_status(&v, "refs/heads/main"), "created");
    assert_eq!(json_status(&v, "refs/tags/v1"), "created");
    assert!(v["objects_sent"].as_u64().unwrap() > 0, "{v:#}");
    assert_no_secrets(&run, &key());
    w.assert_in_step();

    // Temporary credentials: the session token travels in the username.
    w.commit("b", "b");
    w.publish();
    let run = w.tozai_mirror(&temporary_key(), &["--json"]);
    run.expect_code(0).expect_no_panic();
    assert_eq!(json_status(&run.json(), "refs/heads/main"), "updated");
    assert_no_secrets(&run, &temporary_key());
    w.assert_in_step();

    // What a CodeCommit client signing with awscli sees on the standby is the source.
    let src_path = w.src.display().to_string();
    assert_eq!(
        w.ls_remote_with_awscli("dst", &temporary_key()),
        git(
            w.scratch.path(),
            &["ls-remote", "--heads", "--tags", &src_path]
        )
    );
}

#[test]
fn the_cli_mirrors_the_configs_primary_to_its_standby_honouring_sync() {
    let w = World::new();
    w.commit("a", "a");
    w.work.git(&["branch", "release/1"]);
    w.work.git(&["branch", "feature/x"]);
    w.work.git(&["tag", "v1"]);
    w.work.git(&["tag", "other"]);
    w.publish();
    let config = w.scratch.path().join("tozai.toml");
    std::fs::write(
        &config,
        r#"primary = "east"

[regions.east]
aws_region = "us-east-1"
repository = "codecommit::us-east-1://src"

[regions.west]
aws_region = "us-west-2"
repository = "codecommit::us-east-1://dst"

[sync]
branches = ["main", "release/*"]
tags = ["v*"]

[sync.to.east]
paths = ["**"]

[sync.to.west]
paths = ["**"]
"#,
    )
    .unwrap();
    let cache = w.cache();
    let run = w.tozai(
        &key(),
        &[
            "mirror",
            "-c",
            "tozai.toml",
            "--cache",
            cache.to_str().unwrap(),
            "--json",
        ],
    );
    run.expect_code(0).expect_no_panic();
    let v = run.json();
    let names: Vec<&str> = v["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["refs/heads/main", "refs/heads/release/1", "refs/tags/v1"],
        "{v:#}"
    );
    let mirrored = ["refs/heads/main", "refs/heads/release/1", "refs/tags/v1"];
    w.assert_in_step_for(&mirrored);
    let on_standby: Vec<String> = refs(&w.dst)
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(
        on_standby, mirrored,
        "feature/x and tag other are not mirrored"
    );
}

// ---- 10. dry run ----

#[test]
fn a_dry_run_over_http_pushes_nothing() {
    let w = World::new();
    w.commit("a", "a");
    w.work.git(&["tag", "v1"]);
    w.publish();
    let pushes = w.pushes();

    let o = w.mirror_with(&w.request(false, true));
    assert!(o.dry_run);
    assert!(matches!(
        status(&o, "refs/heads/main"),
        RefStatus::Created { .. }
    ));
    assert!(matches!(
        status(&o, "refs/tags/v1"),
        RefStatus::Created { .. }
    ));
    assert_eq!(o.objects_sent, 0);

    let run = w.tozai_mirror(&key(), &["--dry-run", "--json"]);
    run.expect_code(0).expect_no_panic();
    let v = run.json();
    assert_eq!(v["dry_run"], true, "{v:#}");
    assert_eq!(json_status(&v, "refs/heads/main"), "created");

    assert_eq!(w.pushes(), pushes, "{:?}", w.server.requests());
    assert!(refs(&w.dst).is_empty(), "nothing pushed");
    w.fsck_standby();
}

// ---- 11. the first mirror into an empty standby: the cache's pack as it is ----

/// The `.pack` files under `objects/pack` of a bare repository, by name.
fn pack_names(repo: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo.join("objects/pack"))
        .unwrap_or_else(|e| panic!("{}: {e}", repo.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pack"))
        .collect();
    names.sort();
    names
}

impl World {
    /// Three commits adding 150 files, a second branch, a lightweight and an annotated
    /// tag: more than git's `receive.unpackLimit` (100) objects, so the standby keeps the
    /// pack it receives as it came instead of unpacking it into loose objects.
    fn publish_many_objects(&self, branches: &[&str]) {
        for c in 0..3 {
            for i in 0..50 {
                self.work
                    .write(format!("common/c{c}/f{i}.yaml"), format!("n: {c}-{i}\n"));
            }
            self.work.commit(&format!("batch {c}"));
        }
        for b in branches {
            self.work.git(&["branch", b]);
        }
        self.work.git(&["tag", "v0"]);
        self.work.git(&["tag", "-a", "v1", "-m", "release 1"]);
        self.publish();
    }

    /// The cache's only pack, by name.
    fn cache_pack(&self, cache: &Path) -> String {
        let dir = Git2Mirror::new(cache).cache_dir(&self.remote("src", key()));
        let packs = pack_names(&dir);
        assert_eq!(packs.len(), 1, "the cache holds one pack: {packs:?}");
        packs[0].clone()
    }
}

/// Makes a login the server refuses.
type BadLogin = Box<dyn Fn() -> GitLogin + Send + Sync>;

/// A login that is right for the first `good_calls` calls and then `bad`'s.
struct GoodThenBad {
    good: std::sync::Arc<dyn GitCredentials>,
    bad: BadLogin,
    good_calls: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl GitCredentials for GoodThenBad {
    fn login(&self) -> Result<GitLogin, String> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.good_calls {
            self.good.login()
        } else {
            Ok((self.bad)())
        }
    }
}

#[test]
fn the_first_mirror_into_an_empty_standby_sends_the_caches_pack_as_it_is() {
    let w = World::new();
    w.publish_many_objects(&["release/1"]);
    let posts = w.pushes();

    let first = w.mirror();
    assert!(first.in_sync(), "{first:#?}");
    assert_eq!(first.refs.len(), 4, "{first:#?}");
    for r in &first.refs {
        assert!(
            matches!(&r.status, RefStatus::Created { new } if new.as_str() == rev(&w.src, &r.reference.full())),
            "{first:#?}"
        );
    }
    // The standby received the cache's own pack, byte for byte: its name is the pack's
    // checksum. A pack libgit2 built would be another (its own deltas and compression).
    let cache_pack = w.cache_pack(&w.cache());
    assert_eq!(
        pack_names(&w.dst),
        std::slice::from_ref(&cache_pack),
        "{first:#?}"
    );
    let cache_dir = Git2Mirror::new(w.cache()).cache_dir(&w.remote("src", key()));
    let bytes = std::fs::read(cache_dir.join("objects/pack").join(&cache_pack)).unwrap();
    assert_eq!(
        std::fs::read(w.dst.join("objects/pack").join(&cache_pack)).unwrap(),
        bytes
    );
    let objects = u32::from_be_bytes(bytes[8..12].try_into().unwrap());
    assert!(objects > 150, "{objects}");
    assert_eq!(first.objects_sent, u64::from(objects));
    assert_eq!(first.bytes_sent, bytes.len() as u64);
    assert_eq!(w.pushes() - posts, 1, "{:?}", w.server.requests());
    git(&w.dst, &["fsck", "--full", "--strict", "--no-progress"]);
    w.assert_in_step();
    assert_eq!(
        git(&w.dst, &["cat-file", "-t", "refs/tags/v1"]).trim(),
        "tag"
    );

    // A second run has nothing to push, and does not.
    let posts = w.pushes();
    let second = w.mirror();
    assert!(
        second
            .refs
            .iter()
            .all(|r| matches!(r.status, RefStatus::Unchanged { .. })),
        "{second:#?}"
    );
    assert_eq!((second.objects_sent, second.bytes_sent), (0, 0));
    assert_eq!(w.pushes(), posts, "{:?}", w.server.requests());
    w.assert_in_step();

    // A warm cache may hold objects its refs no longer reach: into another empty standby
    // it goes the usual way, with a pack libgit2 builds.
    let dst2 = w.server.create_repo("dst2");
    let mut request = w.request(false, false);
    request.target = w.remote("dst2", key());
    let third = w.mirror_with(&request);
    assert!(third.in_sync(), "{third:#?}");
    tozai_tests::mirror::assert_in_step(&w.src, &dst2);
    let usual = pack_names(&dst2);
    assert_eq!(usual.len(), 1, "{usual:?}");
    assert_ne!(usual[0], cache_pack, "libgit2 built its own pack");
}

#[test]
fn a_ref_refused_on_the_first_mirror_is_rejected_with_the_hooks_reason() {
    let w = World::new();
    w.publish_many_objects(&["blocked", "other"]);
    w.refuse_on_the_standby("refs/heads/blocked", "blocked by policy");

    let run = w.tozai_mirror(&key(), &["--json", "-vv"]);

    run.expect_code(1).expect_no_panic();
    let v = run.json();
    assert_eq!(json_status(&v, "refs/heads/blocked"), "rejected", "{v:#}");
    let blocked = v["refs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ref"] == "refs/heads/blocked")
        .unwrap();
    let reason = blocked["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("hook declined"), "{v:#}");
    assert!(reason.contains("blocked by policy"), "{v:#}");
    for name in [
        "refs/heads/main",
        "refs/heads/other",
        "refs/tags/v0",
        "refs/tags/v1",
    ] {
        assert_eq!(json_status(&v, name), "created", "{name}: {v:#}");
    }
    // The cache's pack went as it is, and `-vv` says so, with no secret in the logs.
    assert_eq!(pack_names(&w.dst), [w.cache_pack(&w.cache())]);
    assert!(run.stderr.contains("method=\"pack\""), "{}", run.stderr);
    assert_no_secrets(&run, &key());
    w.assert_in_step_for(&[
        "refs/heads/main",
        "refs/heads/other",
        "refs/tags/v0",
        "refs/tags/v1",
    ]);
    assert!(refs_named(&w.dst, &["refs/heads/blocked"]).is_empty());

    // The library reports the same through its outcome.
    let w = World::new();
    w.publish_many_objects(&["blocked"]);
    w.refuse_on_the_standby("refs/heads/blocked", "blocked by policy");
    let o = w.mirror();
    assert!(!o.in_sync(), "{o:#?}");
    match status(&o, "refs/heads/blocked") {
        RefStatus::Rejected { reason } => {
            assert!(reason.contains("blocked by policy"), "{reason:?}")
        }
        other => panic!("{other:?}\n{o:#?}"),
    }
    assert!(matches!(
        status(&o, "refs/heads/main"),
        RefStatus::Created { .. }
    ));
    assert_eq!(pack_names(&w.dst), [w.cache_pack(&w.cache())]);
}

#[test]
fn credentials_refused_while_sending_the_pack_fail_authentication_naming_the_location() {
    let w = World::new();
    w.publish_many_objects(&[]);
    let answers = |w: &World, status: u16| {
        w.server
            .requests()
            .iter()
            .filter(|r| r.is(status, "GET", "/v1/repos/dst/info/refs"))
            .count()
    };
    // The first login (the listing of the standby's refs) is right; the pack's push then
    // gets a wrong signature (403: no second try), or an unreadable login (401: a fresh
    // login, 3 in all).
    let wrong_signature = w.remote("dst", wrong_key()).credentials.unwrap();
    let cases: [(&str, BadLogin, usize, u16); 2] = [
        (
            "403",
            Box::new(move || wrong_signature.login().unwrap()),
            1,
            403,
        ),
        (
            "401",
            Box::new(|| GitLogin {
                username: String::new(),
                password: String::new(),
            }),
            3,
            401,
        ),
    ];
    for (case, bad, bad_logins, status) in cases {
        let credentials = std::sync::Arc::new(GoodThenBad {
            good: w.remote("dst", key()).credentials.unwrap(),
            bad,
            good_calls: 1,
            calls: Default::default(),
        });
        let mut request = w.request(false, false);
        request.target.credentials = Some(credentials.clone());
        let before = (
            answers(&w, 200),
            answers(&w, 401),
            answers(&w, 403),
            w.pushes(),
        );
        let started = Instant::now();
        let err = Git2Mirror::new(w.scratch.path().join(format!("cache-{case}")))
            .mirror(&request, None)
            .expect_err(case);
        match &err {
            MirrorError::AuthenticationFailed { location: l, .. } => {
                assert_eq!(l, &location("dst").to_string(), "{case}")
            }
            other => panic!("{case}: {}", chain(other)),
        }
        assert!(
            err.to_string().contains("codecommit::us-east-1://dst"),
            "{err}"
        );
        assert!(!err.is_transient());
        assert!(started.elapsed() < Duration::from_secs(10), "{case}");
        assert_eq!(
            credentials.calls.load(Ordering::SeqCst),
            1 + bad_logins,
            "{case}: one login for the listing, then the pack's"
        );
        // The listing got in (after libgit2's unauthenticated first request, a 401); the
        // pack's push sends its login up front, so the server's only answers to it are
        // the refusals: one 403, or three 401s (libgit2's push would ask first, a 401 more).
        let (ok, challenged, forbidden) = (
            answers(&w, 200) - before.0,
            answers(&w, 401) - before.1,
            answers(&w, 403) - before.2,
        );
        let want = if status == 403 {
            (1, 1, 1)
        } else {
            (1, 1 + bad_logins, 0)
        };
        assert_eq!(
            (ok, challenged, forbidden),
            want,
            "{case}: {:?}",
            w.server.requests()
        );
        assert_eq!(w.pushes(), before.3, "{case}: no POST");
        assert!(refs(&w.dst).is_empty(), "{case}: nothing pushed");
    }
}
