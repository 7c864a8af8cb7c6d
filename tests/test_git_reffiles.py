"""Refs read from git's files answer as `git for-each-ref` does, or not at all."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from waveui.git.command import Repository, init_repository
from waveui.git.reffiles import RefFiles


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def for_each_ref(repo: Path, skipped: tuple[str, ...] = ()) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(objectname) %(refname)")
    return {name: sha for sha, _, name in (line.partition(" ") for line in out.splitlines())
            if not name.startswith(skipped)}


@pytest.fixture
def repository(tmp_path) -> Repository:
    (tmp_path / "repo").mkdir()
    repository = init_repository(tmp_path / "repo")
    root = repository.root
    for n in range(3):
        (root / "f").write_text(f"{n}\n")
        git(root, "add", "f")
        git(root, "commit", "-q", "-m", f"commit {n}")
    git(root, "tag", "-a", "-m", "annotated", "v1", "HEAD~1")  # packed with the commit it peels to
    git(root, "tag", "light", "HEAD~2")
    git(root, "branch", "feature/deep/one", "HEAD~1")
    git(root, "pack-refs", "--all")
    git(root, "branch", "-f", "feature/deep/one", "HEAD")  # loose now, over its packed line
    git(root, "branch", "loose", "HEAD~2")
    git(root, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(root, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    git(root, "symbolic-ref", "refs/heads/alias", "refs/heads/loose")
    git(root, "update-ref", "refs/waveui/e/t/1", "HEAD~1")
    return repository


def test_the_files_answer_as_for_each_ref(repository):
    refs = RefFiles(repository.common_dir).read()
    assert refs == for_each_ref(repository.root)
    assert refs["refs/heads/alias"] == refs["refs/heads/loose"]  # a symbolic ref: the object of its target
    assert refs["refs/tags/v1"] != git(repository.root, "rev-parse", "v1^{commit}")  # the tag object, not its peel
    skipped = ("refs/remotes/", "refs/stash")
    assert RefFiles(repository.common_dir, skipped).read() == for_each_ref(repository.root, skipped)


def test_every_change_is_seen_at_the_next_read(repository):
    root, files = repository.root, RefFiles(repository.common_dir)
    files.read()
    git(root, "branch", "-f", "loose", "HEAD")
    git(root, "tag", "-d", "v1")  # in packed-refs only
    git(root, "update-ref", "-d", "refs/heads/feature/deep/one")  # loose and packed
    git(root, "branch", "new")
    assert files.read() == for_each_ref(root)
    # Rewritten in place, as a script might: same file, same size.
    (repository.common_dir / "refs" / "heads" / "new").write_text(git(root, "rev-parse", "HEAD~2") + "\n")
    assert files.read() == for_each_ref(root)
    git(root, "pack-refs", "--all")
    assert files.read() == for_each_ref(root)


@pytest.mark.parametrize("spoil", ["a loose file of garbage", "a dangling symbolic ref", "a reftable"])
def test_what_the_files_do_not_tell_plainly_is_left_to_git(repository, spoil):
    common = repository.common_dir
    if spoil == "a loose file of garbage":
        (common / "refs" / "heads" / "odd").write_text("not an object id\n")
    elif spoil == "a dangling symbolic ref":
        (common / "refs" / "heads" / "dangling").write_text("ref: refs/heads/nowhere\n")
    else:
        (common / "reftable").mkdir()
    assert RefFiles(common).read() is None


def test_a_loose_ref_is_read_only_when_it_holds_an_object_id(repository):
    head = git(repository.root, "rev-parse", "HEAD")
    assert repository.loose_ref("refs/heads/feature/deep/one") == head
    assert repository.loose_ref("refs/tags/light") is None  # packed: git must say
    assert repository.loose_ref("refs/heads/alias") is None  # symbolic
    assert repository.loose_ref("refs/heads/missing") is None


def test_refs_packed_while_being_read_are_left_to_git(repository):
    """`git pack-refs` between reading packed-refs and the loose files would hide the refs it moved."""
    root = repository.root
    git(root, "branch", "fresh")  # loose, not yet in packed-refs

    class PackedMidway(RefFiles):
        def _read_loose(self, *args):
            git(root, "pack-refs", "--all")  # what a task's `git gc` may do at any moment
            return super()._read_loose(*args)

    assert PackedMidway(repository.common_dir).read() is None
    assert RefFiles(repository.common_dir).read() == for_each_ref(root)
