//! What the mirror reads of its remotes besides their refs, checked with the git CLI:
//!
//! - the standby's default branch, which is never deleted: from a local repository's `HEAD`,
//!   from upload-pack's `symref=HEAD:` (receive-pack's advertisement has no `HEAD`), or from
//!   CodeCommit's `GetRepository`; and the git stand-in refuses deleting it, as CodeCommit
//!   does;
//! - each region's own git endpoint (`TOZAI_CODECOMMIT_ENDPOINTS`);
//! - one cache per source, whatever the working directory;
//! - the first mirror's fast path sends only objects the source's refs reach.
//!
//! The CLI cases run the binary (`cargo build --workspace --bins` first).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::git_auth::{Credentials, GitEndpoint};
use tozai::location::Location;
use tozai::mirror::{MirrorOutcome, RefSelection, RefStatus};
use tozai::ports::{Mirror, MirrorRequest};
use tozai_tests::mirror::{assert_in_step, file_ledger, git, json_status, rev, status, try_git};
use tozai_tests::server::GitServer;
use tozai_tests::stand_ins::CodeCommitApi;
use tozai_tests::{GitRepo, Run, Sandbox, tozai_command};

fn key() -> Credentials {
    Credentials {
        access_key_id: "AKIDREMOTESTEST".into(),
        secret_access_key: "remotes/test+SECRET=key".into(),
        session_token: None,
    }
}

fn codecommit(region: &str, name: &str) -> Location {
    Location::CodeCommit {
        region: region.into(),
        name: name.into(),
    }
}

/// A work tree whose branches and tags [`publish`] makes a source's.
fn work_with_main_and(branches: &[&str]) -> GitRepo {
    let work = GitRepo::new();
    work.write("common/a.yaml", "a: 1\n");
    work.commit("first");
    for b in branches {
        work.git(&["branch", b]);
    }
    work
}

/// Makes the bare repository `source`'s branches and tags exactly the work tree's.
fn publish(work: &GitRepo, source: &Path) {
    work.git(&["push", "-q", "--mirror", source.to_str().unwrap()]);
}

/// Deletes branch `name` in the work tree (after switching away from it).
fn delete_branch(work: &GitRepo, name: &str, switch_to: &str) {
    work.git(&["switch", "-q", switch_to]);
    work.git(&["branch", "-q", "-D", name]);
}

/// The source makes `dev` its default branch and deletes `main`, as a CodeCommit user
/// must (the default branch cannot be deleted); the standby's default is still `main`.
fn source_deletes_main(work: &GitRepo, source: &Path) {
    git(source, &["symbolic-ref", "HEAD", "refs/heads/dev"]);
    delete_branch(work, "main", "dev");
    publish(work, source);
}

fn bare(dir: &Path, name: &str) -> PathBuf {
    git(dir, &["init", "-q", "--bare", "-b", "main", name]);
    dir.join(name)
}

/// `tozai ARGS` in `cwd`, with nothing of the caller's AWS environment; `env` added.
fn tozai_in(cwd: &Path, home: &Path, args: &[&str], env: &[(&str, String)]) -> Run {
    let sandbox = Sandbox::new(home);
    let mut cmd = tozai_command(cwd, &sandbox, args);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("AWS_") || name.starts_with("TOZAI_") {
            cmd.env_remove(name);
        }
    }
    for file in ["aws-config", "aws-credentials"] {
        std::fs::write(home.join(file), "").unwrap();
    }
    cmd.env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", key().access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", key().secret_access_key)
        .env("AWS_REGION", "us-east-1");
    for (name, value) in env {
        cmd.env(name, value);
    }
    Run::of(cmd, format!("tozai {args:?} (in {})", cwd.display()))
}

// ---- the standby's default branch ----

#[test]
fn a_local_standby_keeps_its_default_branch_when_the_source_deletes_it() {
    let tmp = TempDir::new().unwrap();
    let (src, dst) = (bare(tmp.path(), "src.git"), bare(tmp.path(), "dst.git"));
    let work = work_with_main_and(&["dev"]);
    publish(&work, &src);
    let home = tmp.path().join("home");
    let mirror = |extra: &[&str]| {
        let mut args = vec![
            "mirror",
            "--from",
            "./src.git",
            "--to",
            "./dst.git",
            "--cache",
            "cache",
        ];
        args.extend_from_slice(extra);
        tozai_in(tmp.path(), &home, &args, &[])
    };
    mirror(&[]).expect_code(0);
    let main = rev(&dst, "refs/heads/main");

    source_deletes_main(&work, &src);
    let run = mirror(&["--json"]);
    run.expect_code(0);
    assert_eq!(
        json_status(&run.json(), "refs/heads/main"),
        "kept",
        "{}",
        run.stdout
    );
    assert_eq!(
        rev(&dst, "refs/heads/main"),
        main,
        "the standby keeps its main"
    );
    // The text report says so too; --force does not change it.
    let run = mirror(&["--force"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("kept      refs/heads/main"),
        "{}",
        run.stdout
    );
    assert_eq!(rev(&dst, "refs/heads/main"), main);
}

/// A server holding `src` and `dst`, and the work tree that publishes into `src`.
struct Served {
    server: GitServer,
    work: GitRepo,
    src: PathBuf,
    dst: PathBuf,
    scratch: TempDir,
    _repos: TempDir,
}

impl Served {
    fn new(branches: &[&str]) -> Self {
        let repos = TempDir::new().unwrap();
        let server = GitServer::start(repos.path(), &[key()]);
        let (src, dst) = (server.create_repo("src"), server.create_repo("dst"));
        let work = work_with_main_and(branches);
        publish(&work, &src);
        Self {
            server,
            work,
            src,
            dst,
            scratch: TempDir::new().unwrap(),
            _repos: repos,
        }
    }

    fn remote(&self, name: &str) -> tozai::ports::GitRemote {
        let prefix = self.server.url_prefix();
        tozai::remote::codecommit(&codecommit("us-east-1", name), key(), Some(&prefix)).unwrap()
    }

    fn mirror_into(&self, target: &str, cache: &Path) -> MirrorOutcome {
        let request = MirrorRequest {
            source: self.remote("src"),
            target: self.remote(target),
            selection: RefSelection::all(),
            force: false,
            dry_run: false,
            ledger: Some(file_ledger(&self.scratch.path().join("state"), target)),
        };
        Git2Mirror::new(cache)
            .mirror(&request, None)
            .unwrap_or_else(|e| panic!("mirror failed: {e:#?}\n{}", self.server.log()))
    }

    fn cache(&self) -> PathBuf {
        self.scratch.path().join("cache")
    }

    /// `git push URL ARGS` to repository `name` on the server, logged in with a signed
    /// password in the URL (git's own client, not tozai's).
    fn git_push(&self, name: &str, args: &[&str]) -> std::process::Output {
        let endpoint =
            GitEndpoint::codecommit("us-east-1", name, Some(&self.server.url_prefix())).unwrap();
        let login = endpoint.sign(&key(), std::time::SystemTime::now());
        let url = self.server.repo_url(name);
        let (scheme, rest) = url.split_once("://").unwrap();
        let url = format!("{scheme}://{}:{}@{rest}", login.username, login.password);
        std::process::Command::new("git")
            .current_dir(self.work.path())
            .args(["push", &url])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap()
    }
}

#[test]
fn the_git_stand_in_refuses_deleting_the_default_branch_as_codecommit_does() {
    let s = Served::new(&["dev"]);
    publish(&s.work, &s.dst);
    let refused = s.git_push("dst", &[":refs/heads/main"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("deletion of the current branch prohibited"),
        "{stderr}"
    );
    assert!(try_git(&s.dst, &["rev-parse", "--verify", "refs/heads/main"]).is_some());
    // Any other branch may go.
    let deleted = s.git_push("dst", &[":refs/heads/dev"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
}

#[test]
fn an_http_standby_keeps_its_default_branch_read_from_upload_pack() {
    let s = Served::new(&["dev"]);
    s.mirror_into("dst", &s.cache());
    let main = rev(&s.dst, "refs/heads/main");

    source_deletes_main(&s.work, &s.src);
    let o = s.mirror_into("dst", &s.cache());
    assert!(
        matches!(status(&o, "refs/heads/main"), RefStatus::Kept { standby, .. } if standby.as_str() == main),
        "{o:#?}"
    );
    assert!(o.in_sync(), "{o:#?}");
    assert_eq!(rev(&s.dst, "refs/heads/main"), main);
    // A branch that is not the default is deleted as usual.
    s.work.git(&["switch", "-q", "-c", "other"]);
    s.work.git(&["branch", "-q", "-D", "dev"]);
    git(&s.src, &["symbolic-ref", "HEAD", "refs/heads/other"]);
    publish(&s.work, &s.src);
    let o = s.mirror_into("dst", &s.cache());
    assert!(
        matches!(status(&o, "refs/heads/dev"), RefStatus::Deleted { .. }),
        "{o:#?}"
    );
    assert!(
        matches!(status(&o, "refs/heads/main"), RefStatus::Kept { .. }),
        "{o:#?}"
    );
}

#[test]
fn a_codecommit_standby_keeps_its_default_branch_read_with_get_repository() {
    let s = Served::new(&["dev"]);
    let api = CodeCommitApi::start(s.server.repos_root(), &[key()]);
    let home = s.scratch.path().join("home");
    let cache = s.cache();
    let args = [
        "mirror",
        "--from",
        "codecommit::us-east-1://src",
        "--to",
        "codecommit::us-east-1://dst",
        "--cache",
        cache.to_str().unwrap(),
        "--json",
    ];
    let env = [
        ("TOZAI_CODECOMMIT_ENDPOINT", s.server.url_prefix()),
        ("AWS_ENDPOINT_URL_CODECOMMIT", api.endpoint_url()),
    ];
    tozai_in(s.scratch.path(), &home, &args, &env).expect_code(0);
    assert_eq!(
        api.requests_of("GetRepository"),
        Vec::<Value>::new(),
        "asked only when a branch would be deleted"
    );
    let main = rev(&s.dst, "refs/heads/main");

    source_deletes_main(&s.work, &s.src);
    let run = tozai_in(s.scratch.path(), &home, &args, &env);
    run.expect_code(0);
    assert_eq!(
        json_status(&run.json(), "refs/heads/main"),
        "kept",
        "{}",
        run.stdout
    );
    assert_eq!(rev(&s.dst, "refs/heads/main"), main);
    assert_eq!(
        api.requests_of("GetRepository"),
        vec![serde_json::json!({"repositoryName": "dst"})],
        "{}",
        run.stderr
    );
}

// ---- each region's git endpoint ----

#[test]
fn each_region_reaches_its_own_git_endpoint() {
    let (east_repos, west_repos) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let east = GitServer::start_for_regions(east_repos.path(), &[key()], &["us-east-1"]);
    let west = GitServer::start_for_regions(west_repos.path(), &[key()], &["us-west-2"]);
    let (src, dst) = (east.create_repo("core"), west.create_repo("core"));
    let work = work_with_main_and(&["dev"]);
    publish(&work, &src);
    let scratch = TempDir::new().unwrap();
    let home = scratch.path().join("home");
    let args = [
        "mirror",
        "--from",
        "codecommit::us-east-1://core",
        "--to",
        "codecommit::us-west-2://core",
        "--cache",
        "cache",
    ];
    let endpoints = format!(
        "us-east-1={}, us-west-2={}",
        east.url_prefix(),
        west.url_prefix()
    );
    let run = tozai_in(
        scratch.path(),
        &home,
        &args,
        &[("TOZAI_CODECOMMIT_ENDPOINTS", endpoints)],
    );
    run.expect_code(0);
    assert_in_step(&src, &dst);

    // One endpoint for both regions reaches the standby at the source's server, which
    // refuses its signature: what a FIPS endpoint given for both regions would do.
    work.write("b", "b").commit("second");
    publish(&work, &src);
    let run = tozai_in(
        scratch.path(),
        &home,
        &args,
        &[("TOZAI_CODECOMMIT_ENDPOINT", east.url_prefix())],
    );
    run.expect_code(3);
    assert!(
        run.stderr.contains("codecommit::us-west-2://core"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_endpoint_of_another_region_or_partition_is_a_setting_error() {
    let scratch = TempDir::new().unwrap();
    let home = scratch.path().join("home");
    let rows = [
        (
            "codecommit::us-west-2://core",
            vec![(
                "TOZAI_CODECOMMIT_ENDPOINTS",
                "us-west-2=https://git-codecommit-fips.us-east-1.amazonaws.com".to_owned(),
            )],
            "an endpoint of us-east-1, not of us-west-2",
        ),
        (
            "codecommit::us-west-2://core",
            vec![(
                "TOZAI_CODECOMMIT_ENDPOINT",
                "https://git-codecommit-fips.us-east-1.amazonaws.com".to_owned(),
            )],
            "an endpoint of us-east-1, not of us-west-2",
        ),
        (
            "codecommit::us-west-2://core",
            vec![(
                "TOZAI_CODECOMMIT_ENDPOINTS",
                "tokyo=http://127.0.0.1:9".to_owned(),
            )],
            "TOZAI_CODECOMMIT_ENDPOINTS: \"tokyo\" is not an AWS region",
        ),
        (
            "codecommit::us-iso-east-1://core",
            vec![],
            "us-iso-east-1 is in an isolated AWS partition",
        ),
    ];
    for (to, env, why) in rows {
        let run = tozai_in(
            scratch.path(),
            &home,
            &[
                "mirror",
                "--from",
                "codecommit::us-east-1://core",
                "--to",
                to,
            ],
            &env,
        );
        run.expect_code(2).expect_no_panic();
        assert!(run.stderr.contains(why), "{to} {env:?}: {}", run.stderr);
    }
}

// ---- one cache per source ----

const PROJECT: &str = r#"
primary = "virginia"
[regions.virginia]
aws_region = "us-east-1"
repository = "./regions/virginia.git"
[regions.ohio]
aws_region = "us-east-2"
repository = "./regions/ohio.git"
[sync]
branches = ["main"]
[sync.to.ohio]
paths = ["**"]
[sync.to.virginia]
paths = ["**"]
"#;

/// A project directory with its config and two local regions; the primary has one commit
/// of `file` with `text`.
fn project(root: &Path, name: &str, text: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("regions")).unwrap();
    std::fs::write(dir.join("tozai.toml"), PROJECT).unwrap();
    let primary = bare(&dir.join("regions"), "virginia.git");
    bare(&dir.join("regions"), "ohio.git");
    let work = GitRepo::new();
    work.write("file", text).commit(name);
    publish(&work, &primary);
    dir
}

fn caches(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".git"))
        .collect();
    names.sort();
    names
}

#[test]
fn two_projects_have_two_caches_and_one_source_has_one_from_any_directory() {
    let tmp = TempDir::new().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let (a, b) = (project(&root, "a", "a\n"), project(&root, "b", "b\n"));
    let cache = root.join("cache");
    let home = root.join("home");
    let mirror = |cwd: &Path, config: &str| {
        tozai_in(
            cwd,
            &home,
            &["mirror", "-c", config, "--cache", cache.to_str().unwrap()],
            &[],
        )
        .expect_code(0);
    };
    mirror(&a, "tozai.toml");
    mirror(&b, "tozai.toml");
    assert_eq!(caches(&cache).len(), 2, "{:?}", caches(&cache));
    for p in [&a, &b] {
        assert_in_step(&p.join("regions/virginia.git"), &p.join("regions/ohio.git"));
    }
    assert_ne!(
        rev(&a.join("regions/ohio.git"), "refs/heads/main"),
        rev(&b.join("regions/ohio.git"), "refs/heads/main")
    );

    let before = caches(&cache);
    mirror(&a.join("regions"), "../tozai.toml");
    mirror(&root, "a/tozai.toml");
    mirror(&a.join("regions/ohio.git"), "../../tozai.toml");
    assert_eq!(caches(&cache), before, "no new cache for the same source");
}

// ---- the fast path sends only what the refs reach ----

/// The number of objects `repo` holds, loose and packed (`git count-objects -v`).
fn object_count(repo: &Path) -> u64 {
    let out = git(repo, &["count-objects", "-v"]);
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| *k == "count" || *k == "in-pack")
        .map(|(_, v)| v.trim().parse::<u64>().unwrap())
        .sum()
}

/// The number of objects the branches and tags of `repo` reach.
fn reachable_count(repo: &Path) -> u64 {
    git(repo, &["rev-list", "--objects", "--branches", "--tags"])
        .lines()
        .count() as u64
}

/// The `.pack` files of a bare repository, by name.
fn pack_names(repo: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pack"))
        .collect();
    names.sort();
    names
}

fn exists(repo: &Path, id: &str) -> bool {
    try_git(repo, &["cat-file", "-e", id]).is_some()
}

/// Publishes a branch `gone` with a commit and a file of its own, then deletes it: the
/// source's object store keeps them, but no ref reaches them. Returns the commit and blob.
fn publish_then_delete_a_branch(s: &Served) -> (String, String) {
    s.work.git(&["switch", "-q", "-c", "gone"]);
    let commit = s
        .work
        .write("only-on-gone.txt", "unreachable soon\n")
        .commit("gone");
    let blob = s
        .work
        .git(&["rev-parse", "gone:only-on-gone.txt"])
        .trim()
        .to_owned();
    publish(&s.work, &s.src);
    (commit, blob)
}

#[test]
fn a_cold_first_mirror_sends_nothing_the_sources_refs_do_not_reach() {
    let s = Served::new(&["dev"]);
    let (commit, blob) = publish_then_delete_a_branch(&s);
    delete_branch(&s.work, "gone", "main");
    publish(&s.work, &s.src);
    assert!(
        exists(&s.src, &commit),
        "the source still holds the deleted branch's commit"
    );
    // The standby keeps a pushed pack as it comes, whatever its size.
    git(&s.dst, &["config", "receive.unpackLimit", "1"]);

    let o = s.mirror_into("dst", &s.cache());
    assert!(o.in_sync(), "{o:#?}");
    assert_in_step(&s.src, &s.dst);
    // The fast path was taken: the standby holds the cache's very pack.
    let cache_dir = Git2Mirror::new(s.cache()).cache_dir(&s.remote("src"));
    assert_eq!(pack_names(&s.dst), pack_names(&cache_dir));
    for id in [&commit, &blob] {
        assert!(!exists(&s.dst, id), "{id} reached the standby");
    }
    assert_eq!(object_count(&s.dst), reachable_count(&s.src));
    assert_eq!(o.objects_sent, reachable_count(&s.src), "{o:#?}");
}

#[test]
fn a_first_mirror_from_a_warm_cache_sends_nothing_the_source_no_longer_reaches() {
    let s = Served::new(&["dev"]);
    let (commit, blob) = publish_then_delete_a_branch(&s);
    // The cache fetches `gone`; then the source deletes it, and the mirror prunes it.
    s.mirror_into("dst", &s.cache());
    delete_branch(&s.work, "gone", "main");
    s.work.write("c", "c").commit("after");
    publish(&s.work, &s.src);
    s.mirror_into("dst", &s.cache());
    let cache_dir = Git2Mirror::new(s.cache()).cache_dir(&s.remote("src"));
    assert!(
        exists(&cache_dir, &commit),
        "the cache still holds the deleted branch's commit"
    );

    // A new, empty standby: its first mirror comes from the warm cache.
    let fresh = s.server.create_repo("fresh");
    let o = s.mirror_into("fresh", &s.cache());
    assert!(o.in_sync(), "{o:#?}");
    assert_in_step(&s.src, &fresh);
    for id in [&commit, &blob] {
        assert!(!exists(&fresh, id), "{id} reached the standby");
    }
    assert_eq!(object_count(&fresh), reachable_count(&s.src));
}
