"""SECURITY-CASES G5: the git route serves exactly the session's repository, in canonical form, and only git's
smart-HTTP endpoints."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.gateway.routes import GitRoute, Repository, RouteRefused, route_git

REPO = Repository.parse("acme/widgets")


@pytest.mark.parametrize(
    ("method", "target", "route"),
    [
        ("GET", "/git/acme/widgets.git/info/refs?service=git-upload-pack", GitRoute("git-upload-pack", True)),
        ("GET", "/git/acme/widgets.git/info/refs?service=git-receive-pack", GitRoute("git-receive-pack", True)),
        ("POST", "/git/acme/widgets.git/git-upload-pack", GitRoute("git-upload-pack", False)),
        ("POST", "/git/acme/widgets.git/git-receive-pack", GitRoute("git-receive-pack", False)),
    ],
)
def test_the_smart_http_endpoints_of_the_session_repository(method: str, target: str, route: GitRoute) -> None:
    assert route_git(method, target.encode(), REPO) == route


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/git/acme/other.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/evil/widgets.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/ACME/widgets.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/Widgets.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets.git.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets.git/info/refs/?service=git-upload-pack"),
        ("GET", "/git/acme%2Fwidgets.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets%2egit/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets.git/../other.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets.git/./info/refs?service=git-upload-pack"),
        ("GET", "/git//acme/widgets.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme//widgets.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets.git//info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets.git\\info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets.git/info/refs"),
        ("GET", "/git/acme/widgets.git/info/refs?service=git-upload-pack&service=git-receive-pack"),
        ("GET", "/git/acme/widgets.git/info/refs?service=git-receive-pack&x=1"),
        ("GET", "/git/acme/widgets.git/info/refs?service=git-upload-archive"),
        ("GET", "/git/acme/widgets.git/info/refs?SERVICE=git-upload-pack"),
        ("POST", "/git/acme/widgets.git/info/refs?service=git-upload-pack"),
        ("GET", "/git/acme/widgets.git/git-receive-pack"),
        ("POST", "/git/acme/widgets.git/git-receive-pack?service=x"),
        ("POST", "/git/acme/widgets.git/git-upload-archive"),
        ("GET", "/git/acme/widgets.git/HEAD"),
        ("GET", "/git/acme/widgets.git/objects/info/packs"),
        ("GET", "/git/acme/widgets.git/config"),
        ("GET", "/git/acme/widgets.git"),
        ("GET", "/model/anthropic/v1/messages"),
        ("GET", "/git/acme/widgets.git/info/refs?service=git-upload-pack#x"),
        ("GET", "/git/acme/widgets.git/info/refs?service=git-upload-pack\x00"),
    ],
)
def test_g5_every_other_path_is_refused(method: str, target: str) -> None:
    with pytest.raises(RouteRefused):
        route_git(method, target.encode(), REPO)


@pytest.mark.parametrize("text", ["acme", "acme/", "/widgets", "a/b/c", "../x", "acme/..", "acme/wid gets", "ac%me/x"])
def test_bad_repositories_are_refused_at_configuration(text: str) -> None:
    with pytest.raises(ValueError):
        Repository.parse(text)


def test_repo_and_repo_dot_git_name_the_same_repository() -> None:
    assert Repository.parse("acme/widgets.git") == REPO


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80))
def test_only_the_four_canonical_targets_are_ever_accepted(suffix: str) -> None:
    target = (REPO.path + suffix).encode()
    canonical = {
        "/info/refs?service=git-upload-pack",
        "/info/refs?service=git-receive-pack",
        "/git-upload-pack",
        "/git-receive-pack",
    }
    for method in ("GET", "POST"):
        try:
            route_git(method, target, REPO)
        except RouteRefused:
            continue
        assert suffix in canonical
